"""JSON schemas (OpenAPI 3.0) of the seed's types as this API returns them, and of request bodies.

Names follow the seed's `types/api.ts`. Fields the seed marks optional (`phone?`) may be null here;
fields beyond the seed are listed too, so clients and the schema fuzz test see the whole shape.
"""

from __future__ import annotations

from typing import Any

from metering.user_rules import LANGUAGES, PLANS, STATUSES

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


def obj(properties: dict[str, Schema], required: list[str] | None = None, *, extra: bool = True) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required is None:
        required = list(properties)
    if required:
        schema["required"] = required
    if not extra:
        schema["additionalProperties"] = False
    return schema


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time"}
ANY_OBJECT: Schema = {"type": "object", "additionalProperties": True}
HEALTH: Schema = {"type": "string", "enum": ["healthy", "unhealthy"]}

USER = obj(
    {
        "id": INT,
        "email": STR,
        "name": STR,
        "phone": nullable(STR),
        "status": {"type": "string", "enum": list(STATUSES)},
        "plan": {"type": "string", "enum": list(PLANS)},
        "monthlyLimit": INT,
        "currentUsage": INT,
        "additionalTokens": INT,
        "alert80Sent": BOOL,
        "alert95Sent": BOOL,
        "lastAlertDate": nullable(TIME),
        "lastLogin": nullable(TIME),
        "loginCount": INT,
        "notes": nullable(STR),
        "customAlertThreshold80": nullable(NUM),
        "customAlertThreshold95": nullable(NUM),
        "emailNotificationsEnabled": BOOL,
        "createdAt": TIME,
        "updatedAt": TIME,
        "librechatId": nullable(STR),
        "language": nullable({"type": "string", "enum": list(LANGUAGES)}),
        "reservedTokens": INT,
        "period": STR,
        "refusals": {"type": "object", "additionalProperties": INT},
        "departmentId": nullable(INT),
    },
    required=[
        "id",
        "email",
        "name",
        "status",
        "plan",
        "monthlyLimit",
        "currentUsage",
        "additionalTokens",
        "alert80Sent",
        "alert95Sent",
        "loginCount",
        "emailNotificationsEnabled",
        "createdAt",
        "updatedAt",
    ],
)

_USER_FIELDS: dict[str, Schema] = {
    "email": {"type": "string", "format": "email", "maxLength": 254},
    "name": {"type": "string", "maxLength": 200},
    "phone": nullable({"type": "string", "maxLength": 40}),
    "plan": {"type": "string", "enum": list(PLANS)},
    "monthlyLimit": {"type": "integer", "minimum": 0},
    "emailNotificationsEnabled": BOOL,
    "language": nullable({"type": "string", "enum": list(LANGUAGES)}),
    "librechatId": nullable({"type": "string", "maxLength": 200}),
    "departmentId": nullable({"type": "integer", "minimum": 1}),
}
CREATE_USER = obj(_USER_FIELDS, required=["email"])
UPDATE_USER = obj(
    {
        **_USER_FIELDS,
        "status": {"type": "string", "enum": list(STATUSES)},
        "additionalTokens": {"type": "integer", "minimum": 0},
        "notes": nullable({"type": "string", "maxLength": 5000}),
        "customAlertThreshold80": nullable({"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 100}),
        "customAlertThreshold95": nullable({"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 100}),
    },
    required=[],
)
ADD_TOKENS = obj(
    {"amount": {"type": "integer", "minimum": 1}, "reason": nullable({"type": "string", "maxLength": 500})},
    required=["amount"],
)

TOKEN_USAGE = obj(
    {
        "id": INT,
        "userId": nullable(INT),
        "requestId": STR,
        "sessionId": nullable(STR),
        "model": STR,
        "endpoint": STR,
        "method": STR,
        "promptTokens": INT,
        "completionTokens": INT,
        "totalTokens": INT,
        "estimatedTokens": nullable(INT),
        "estimationAccuracy": nullable(NUM),
        "costPerToken": NUM,
        "totalCost": NUM,
        "userAgent": nullable(STR),
        "ipAddress": nullable(STR),
        "countryCode": nullable(STR),
        "responseTimeMs": nullable(INT),
        "queueTimeMs": nullable(INT),
        "processingTimeMs": nullable(INT),
        "statusCode": INT,
        "errorMessage": nullable(STR),
        "errorType": nullable(STR),
        "isCached": BOOL,
        "isRetry": BOOL,
        "retryCount": INT,
        "isComplete": BOOL,
        "priceKnown": BOOL,
        "requestData": nullable(STR),
        "responseData": nullable(STR),
        "createdAt": TIME,
        **{"userName": nullable(STR), "userEmail": nullable(STR)},  # who userId is
    }
)
UNPRICED = {"unpricedRequests": INT, "unpricedTokens": INT, "costComplete": BOOL}
PEOPLE_AND_DELIVERY = {"userName": nullable(STR), "userEmail": nullable(STR), "test": BOOL, "summary": STR,  # an Alert's
    "delivery": obj({"state": {"type": "string", "enum": ["queued", "sent", "retrying", "failed", "not_sent"]}, "reason": nullable(STR), "attempts": INT})}  # fmt: skip

DASHBOARD = obj(
    {
        "totalUsers": INT,
        "activeUsers": INT,
        "totalTokensUsed": INT,
        "totalCost": NUM,
        "avgTokensPerUser": NUM,
        "totalRequests": INT,
        "errorRate": NUM,
        "topModels": array(obj({"model": STR, "usage": INT, "percentage": NUM})),
        "usageByDay": array(obj({"date": STR, "tokens": INT, "cost": NUM, "users": INT})),
        "alertsSent": obj({"alert80": INT, "alert95": INT, "blocked": INT}),
        "systemHealth": obj({"proxy": HEALTH, "litellm": HEALTH, "database": HEALTH, "redis": HEALTH}),
        "period": STR,
        "startDate": STR,
        "endDate": STR,
        **UNPRICED,
        "refusalsThisPeriod": {"type": "object", "additionalProperties": INT},
    }
)

USER_ANALYTICS = obj(
    {
        "userId": INT,
        "period": STR,
        "startDate": STR,
        "endDate": STR,
        "totalTokens": INT,
        "totalCost": NUM,
        "requestCount": INT,
        "avgTokensPerRequest": NUM,
        "modelUsage": array(obj({"model": STR, "tokens": INT, "requests": INT, "cost": NUM, "unpricedRequests": INT})),
        "dailyUsage": array(obj({"date": STR, "tokens": INT, "requests": INT, "cost": NUM})),
        "errorRate": NUM,
        "avgResponseTime": NUM,
        **UNPRICED,
        "refusalsThisPeriod": {"type": "object", "additionalProperties": INT},
    }
)

_EMAIL_SETTINGS = {
    "smtpHost": STR,
    "smtpPort": INT,
    "smtpUser": STR,
    "fromEmail": STR,
    "fromName": STR,
    "useTls": BOOL,
}
_SECURITY_SETTINGS = {"rateLimitPerMinute": INT, "rateLimitBurst": INT, "corsOrigins": array(STR)}
_LITELLM_SETTINGS = {"baseUrl": STR, "timeout": NUM, "maxRetries": INT, "healthCheckInterval": NUM}
_TOP_SETTINGS = {
    "defaultMonthlyLimit": INT,
    "alertThreshold80": NUM,
    "alertThreshold95": NUM,
    "blockThreshold": NUM,
    "maxUserLimit": INT,
    "minUserLimit": INT,
    "forecastMarginDays": NUM,  # beyond the seed: the forecast alert's margin (issue 16)
}
SYSTEM_SETTINGS = obj(
    {
        **_TOP_SETTINGS,
        "emailSettings": obj({**_EMAIL_SETTINGS, "smtpPasswordSet": BOOL}),
        "securitySettings": obj(_SECURITY_SETTINGS),
        "litellmSettings": obj(_LITELLM_SETTINGS),
    }
)
SETTINGS_PATCH = obj(
    {
        **_TOP_SETTINGS,
        "emailSettings": obj({**_EMAIL_SETTINGS, "smtpPassword": STR, "smtpPasswordSet": BOOL}, required=[]),
        "securitySettings": obj(_SECURITY_SETTINGS, required=[]),
        "litellmSettings": obj(_LITELLM_SETTINGS, required=[]),
    },
    required=[],
)
TEST_EMAIL = obj({"email": {"type": "string", "format": "email"}}, required=["email"])
TEST_EMAIL_RESULT = obj({"email": STR, "smtpHost": STR, "smtpPort": INT, "subject": STR})

ALERT_TYPES = ["usage_80", "usage_95", "blocked", "system_error", "model_error", "forecast"]
ALERT_STATUSES = ["pending", "sent", "failed", "acknowledged"]
ALERT = obj(
    {
        "id": INT,
        "userId": nullable(INT),
        "type": {"type": "string", "enum": ALERT_TYPES},
        "title": STR,
        "message": STR,
        "severity": {"type": "string", "enum": ["info", "warning", "error", "critical"]},
        "status": {"type": "string", "enum": ALERT_STATUSES},
        "sentAt": nullable(TIME),
        "acknowledgedAt": nullable(TIME),
        "metadata": ANY_OBJECT,
        "createdAt": TIME,
        **PEOPLE_AND_DELIVERY,
    }
)
TEST_ALERT = obj({"userId": {"type": "integer", "minimum": 1}, "type": {"type": "string", "enum": ALERT_TYPES}})

MODEL_INFO = obj(
    {
        "name": STR,
        "provider": STR,
        "status": {"type": "string", "enum": ["healthy", "unhealthy", "rate_limited", "unavailable"]},
        "lastCheck": nullable(TIME),
        "responseTimeMs": nullable(NUM),
        "errorRate": NUM,
        "costPerInputToken": NUM,
        "costPerOutputToken": NUM,
        "maxTokens": INT,
        "supportsVision": BOOL,
        "supportsFunctionCalling": BOOL,
        "usage24h": obj({"requests": INT, "tokens": INT, "cost": NUM, "errors": INT, "rateLimited": INT}),
        "listedByLitellm": BOOL,
        "priceKnown": BOOL,
        "promptCalibration": obj({"factor": NUM, "samples": INT}),
    }
)

AUDIT_LOG = obj(
    {
        "id": INT,
        "userId": nullable(INT),
        "actorEmail": nullable(STR),
        "action": STR,
        "resource": STR,
        "resourceId": nullable(STR),
        "details": ANY_OBJECT,
        "ipAddress": nullable(STR),
        "userAgent": nullable(STR),
        "requestId": nullable(STR),
        "success": BOOL,
        "errorMessage": nullable(STR),
        "createdAt": TIME,
        **{"actorName": nullable(STR), "subjectName": nullable(STR), "subjectEmail": nullable(STR)},
    }
)

API_KEY = obj(
    {
        "id": INT,
        "prefix": STR,
        "kind": {"type": "string", "enum": ["service", "personal"]},
        "userId": nullable(INT),
        "name": STR,
        "createdAt": TIME,
        "lastUsedAt": nullable(TIME),
        "revokedAt": nullable(TIME),
    }
)
NEW_API_KEY = {"allOf": [ref("ApiKey"), obj({"key": STR})]}
CREATE_KEY = obj({"name": {"type": "string", "maxLength": 200}}, required=[])

AUTH_USER = obj(
    {
        "id": INT,
        "email": STR,
        "name": STR,
        "role": {"type": "string", "enum": ["admin", "user"]},
        "permissions": array(STR),
    }
)
_SESSION = {"lastLogin": nullable(TIME), "loginCount": INT, "createdAt": TIME, "sessionExpiresAt": TIME}
PROFILE = {"allOf": [ref("AuthUser"), obj(_SESSION, required=["sessionExpiresAt"])]}
LOGIN = obj({"email": {"type": "string", "maxLength": 254}, "password": {"type": "string", "maxLength": 1024}})
LOGIN_RESULT = obj({"token": STR, "user": ref("AuthUser"), "expiresAt": TIME})

SYSTEM_HEALTH = obj(
    {
        "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]},
        "proxy": HEALTH,
        "litellm": HEALTH,
        "database": HEALTH,
        "redis": HEALTH,
        "latencyMs": obj({"litellm": nullable(NUM), "database": nullable(NUM), "redis": nullable(NUM)}),
        "timestamp": TIME,
    }
)
_PROBE = obj(
    {
        "status": {"type": "string", "enum": ["healthy", "unhealthy", "not_available"]},
        "httpStatus": nullable(INT),
        "responseTimeMs": nullable(NUM),
        "body": nullable({}),
        "error": nullable(STR),
    }
)
LITELLM_HEALTH = obj(
    {
        "status": HEALTH,
        "baseUrl": STR,
        "liveliness": _PROBE,
        "readiness": _PROBE,
        "checkedAt": TIME,
    }
)

API_ERROR = obj(
    {
        "success": {"type": "boolean", "enum": [False]},
        "message": STR,
        "code": STR,
        "details": ANY_OBJECT,
        "timestamp": TIME,
        "requestId": STR,
    },
    required=["success", "message", "code", "details", "timestamp"],
)
PAGINATION = obj({"page": INT, "limit": INT, "total": INT, "totalPages": INT, "hasNext": BOOL, "hasPrev": BOOL})

COMPONENTS: dict[str, Schema] = {
    "User": USER,
    "CreateUserRequest": CREATE_USER,
    "UpdateUserRequest": UPDATE_USER,
    "AddTokensRequest": ADD_TOKENS,
    "TokenUsage": TOKEN_USAGE,
    "DashboardMetrics": DASHBOARD,
    "UserAnalytics": USER_ANALYTICS,
    "SystemSettings": SYSTEM_SETTINGS,
    "SystemSettingsPatch": SETTINGS_PATCH,
    "TestEmailRequest": TEST_EMAIL,
    "TestEmailResult": TEST_EMAIL_RESULT,
    "Alert": ALERT,
    "TestAlertRequest": TEST_ALERT,
    "ModelInfo": MODEL_INFO,
    "AuditLog": AUDIT_LOG,
    "ApiKey": API_KEY,
    "NewApiKey": NEW_API_KEY,
    "CreateApiKeyRequest": CREATE_KEY,
    "AuthUser": AUTH_USER,
    "Profile": PROFILE,
    "LoginRequest": LOGIN,
    "LoginResult": LOGIN_RESULT,
    "SystemHealth": SYSTEM_HEALTH,
    "LiteLLMHealth": LITELLM_HEALTH,
    "ApiError": API_ERROR,
    "Pagination": PAGINATION,
}
