//! `/livez`, `/readyz` and `/metrics` on the admin port.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Exposition;

pub async fn serve(
    listener: tokio::net::TcpListener,
    ready: Arc<AtomicBool>,
    metrics: Option<Arc<dyn Exposition>>,
) {
    let app = Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::SeqCst);
                async move {
                    if ready {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let body = metrics.as_ref().map(|m| m.render()).unwrap_or_default();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                        .into_response()
                }
            }),
        );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("admin endpoint stopped: {e}");
    }
}
