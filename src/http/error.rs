//! The one error type of the HTTP layer: `{"error": {"code", "message"}}` with a fitting
//! status. Internal errors are logged once here and answered with an opaque 500.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: &str) -> ApiError {
        ApiError {
            status,
            code,
            message: message.to_string(),
        }
    }
    pub fn unauthorized(m: &str) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", m)
    }
    pub fn forbidden(m: &str) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, "forbidden", m)
    }
    pub fn not_found(m: &str) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "not_found", m)
    }
    pub fn bad_request(m: &str) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", m)
    }
    pub fn unprocessable(m: &str) -> ApiError {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m)
    }
    pub fn unavailable(m: &str) -> ApiError {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
    }
}

impl ApiError {
    /// The opaque 500: what went wrong is in the log, never in the answer.
    pub fn internal() -> ApiError {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "服务器内部错误，已记录日志 internal error (logged)",
        )
    }

    /// A body that stopped coming (`http.body_timeout`), else what the rejection says.
    fn from_body_rejection(
        r: &(dyn std::error::Error + 'static),
        status: StatusCode,
        code: &'static str,
        text: &str,
    ) -> ApiError {
        if body_timed_out(r) {
            Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "请求正文发送超时 the request body stopped arriving (http.body_timeout); send it again in one go",
            )
        } else {
            Self::new(status, code, text)
        }
    }
}

/// Whether `RequestBodyTimeoutLayer` cut the body off, somewhere down the error's causes.
fn body_timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        if disk_full(&e) {
            // The operator's to fix, and the same request will work once there is room: a 503
            // that names the disk, not an opaque 500 (bench/faults diskfull).
            tracing::error!(error = %format!("{e:#}"), "request refused: the database's disk is full");
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "disk_full",
                "数据库磁盘已满，未保存，请稍后重发 the database's disk is full: nothing was saved; send again once there is room",
            );
        }
        tracing::error!(error = %format!("{e:#}"), "request failed");
        Self::internal()
    }
}

/// Whether the database refused a write for want of disk space, somewhere down the causes:
/// SQLite's `SQLITE_FULL` (13), PostgreSQL's `disk_full` (53100), or the OS's ENOSPC text.
pub(crate) fn disk_full(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let coded = match c.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Database(d)) => matches!(d.code().as_deref(), Some("13" | "53100")),
            _ => false,
        };
        coded || {
            let text = c.to_string();
            text.contains("database or disk is full") || text.contains("No space left on device")
        }
    })
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> ApiError {
        anyhow::Error::from(e).into()
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> ApiError {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "bad_body"
        };
        Self::from_body_rejection(&r, status, code, &r.body_text())
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> ApiError {
        Self::from_body_rejection(&r, r.status(), "bad_json", &r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_a_503_that_names_the_disk_and_other_errors_stay_opaque() {
        let full = anyhow::anyhow!("error returned from database: (code: 13) database or disk is full")
            .context("recording a batch");
        let e = ApiError::from(full);
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, "disk_full");
        assert!(
            e.message.contains("磁盘") && e.message.contains("disk"),
            "{}",
            e.message
        );
        let other = ApiError::from(anyhow::anyhow!("UNIQUE constraint failed: callouts.id"));
        assert_eq!(other.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
