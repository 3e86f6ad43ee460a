"""The chargeback report as files: CSV for programs, XLSX for people.

CSV (UTF-8 with a BOM, so spreadsheets read accents right; one header row): one table whose
first column, `section`, says what a row is, so it reads back with any CSV reader and filters in a
spreadsheet:
- `model`: a department x model (requests, tokens, cost);
- `member`: a department x user (the user's requests charged to that department this month);
- `department`: a department's totals (with `members`, its users with requests);
- `total`: the whole month (one row, last).
Its column names and values are fixed English (`CSV_FIELDS`), whatever the admin's language, so
scripts can rely on them; the "no department" group has an empty `departmentId`.

XLSX: three sheets (departments with totals, department x model, department x user), headers and
labels in the admin's language, numbers stored as numbers (cost with six decimals).

Text a spreadsheet would run as a formula (a name such as `=cmd`) is neutralised in both: a
leading apostrophe in CSV (as the other exports do), and in XLSX a cell typed as text with Excel's
quote prefix, so it stays text even when edited.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

from metering.chargeback import Chargeback, DepartmentLine, Figures
from metering.exports import FORMULA_START, csv_cell

Translate = Callable[[str], str]

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
FIGURE_FIELDS = [
    "requests",
    "promptTokens",
    "completionTokens",
    "totalTokens",
    "cost",
    "unpricedRequests",
    "unpricedTokens",
]
CSV_FIELDS = [
    "section",
    "month",
    "departmentId",
    "department",
    "model",
    "userId",
    "userName",
    "userEmail",
    "members",
    *FIGURE_FIELDS,
]
NO_DEPARTMENT = "(no department)"
COST_COLUMN = FIGURE_FIELDS.index("cost")
COST_DIGITS = 6


def figure_values(figures: Figures) -> list[Any]:
    return [
        figures.requests,
        figures.prompt_tokens,
        figures.completion_tokens,
        figures.total_tokens,
        round(figures.cost, COST_DIGITS),
        figures.unpriced_requests,
        figures.unpriced_tokens,
    ]


def department_label(line: DepartmentLine, translate: Translate) -> str:
    if line.department_id is None:
        return translate(NO_DEPARTMENT)
    return line.name or f"#{line.department_id}"


# -- CSV ----------------------------------------------------------------------------------------


def _csv_figures(figures: Figures) -> list[Any]:
    """Cost in fixed notation (0.000012, never 1.2e-05), which every spreadsheet reads."""
    values = figure_values(figures)
    values[COST_COLUMN] = f"{values[COST_COLUMN]:.{COST_DIGITS}f}"
    return values


def csv_rows(report: Chargeback) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for dep in report.departments:
        head = [report.month, dep.department_id, department_label(dep, str)]
        for model in dep.models:
            rows.append(["model", *head, model.model, None, None, None, None, *_csv_figures(model.figures)])
        for m in dep.members:
            rows.append(["member", *head, None, m.user_id, m.name, m.email, None, *_csv_figures(m.figures)])
        rows.append(["department", *head, None, None, None, None, len(dep.members), *_csv_figures(dep.figures)])
    rows.append(["total", report.month, *[None] * 6, report.members, *_csv_figures(report.figures)])
    return rows


def to_csv(report: Chargeback) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    writer.writerows([csv_cell(v) for v in row] for row in csv_rows(report))
    return ("\ufeff" + out.getvalue()).encode()


# -- XLSX ---------------------------------------------------------------------------------------

FIGURE_HEADERS = [
    "Requests",
    "Prompt tokens",
    "Completion tokens",
    "Total tokens",
    "Cost (USD)",
    "Requests with unknown price",
    "Tokens with unknown price",
]
COST_FORMAT = "#,##0.000000"


class _Sheet:
    def __init__(self, book: Workbook, title: str, headers: list[str]) -> None:
        self.ws: Any = book.create_sheet(title[:31])  # a write-only sheet: rows are appended, never read
        self.ws.append([self._cell(h, bold=True) for h in headers])
        self.cost_column = len(headers) - len(FIGURE_HEADERS) + COST_COLUMN

    def _cell(self, value: Any, *, bold: bool = False, number_format: str | None = None) -> WriteOnlyCell:
        cell = WriteOnlyCell(self.ws, value=value)
        if isinstance(value, str):
            cell.data_type = "s"  # never a formula, whatever the text starts with
            if value.startswith(FORMULA_START):
                cell.quotePrefix = True
        if bold:
            cell.font = Font(bold=True)
        if number_format:
            cell.number_format = number_format
        return cell

    def row(self, values: list[Any], *, bold: bool = False) -> None:
        self.ws.append(
            [
                self._cell(v, bold=bold, number_format=COST_FORMAT if i == self.cost_column else None)
                for i, v in enumerate(values)
            ]
        )


def to_xlsx(report: Chargeback, translate: Translate) -> bytes:
    t = translate
    figures = [t(h) for h in FIGURE_HEADERS]
    book = Workbook(write_only=True)
    book.properties.title = f"{t('Chargeback')} {report.month}"
    summary = _Sheet(book, t("Departments"), [t("Month"), t("Department"), t("Members"), *figures])
    models = _Sheet(book, t("Models"), [t("Month"), t("Department"), t("Model"), *figures])
    members = _Sheet(book, t("Members"), [t("Month"), t("Department"), t("Name"), t("E-mail"), *figures])
    for dep in report.departments:
        label = department_label(dep, t)
        summary.row([report.month, label, len(dep.members), *figure_values(dep.figures)])
        for model in dep.models:
            models.row([report.month, label, model.model, *figure_values(model.figures)])
        for m in dep.members:
            name = m.name or (t("Unknown user") if m.user_id is None else f"#{m.user_id}")
            members.row([report.month, label, name, m.email, *figure_values(m.figures)])
    summary.row([report.month, t("Total"), report.members, *figure_values(report.figures)], bold=True)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
