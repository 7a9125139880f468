//! What the services' HTTP sides share (`ingest run`, `score watch`):
//! binding with an error that names the address, serving in the
//! background, and the probe and Prometheus responses.

use std::net::SocketAddr;

use anyhow::Context;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

/// Binds `addr` and serves `app` in the background.
pub async fn serve(addr: SocketAddr, app: axum::Router) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--listen {addr}: cannot bind (in use? pick another port)"))?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the HTTP server stopped");
        }
    });
    Ok(())
}

/// `/readyz`: 200 with why it is ready, or 503 with why not.
pub fn probe(ready: Result<String, String>) -> (StatusCode, String) {
    match ready {
        Ok(msg) => (StatusCode::OK, msg + "\n"),
        Err(msg) => (StatusCode::SERVICE_UNAVAILABLE, msg + "\n"),
    }
}

/// `/metrics`: the registry's exposition, OpenMetrics when the scraper's
/// Accept header asks for it.
pub fn prometheus(
    registry: &prometheus_client::registry::Registry,
    headers: &axum::http::HeaderMap,
) -> impl IntoResponse + use<> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, text) =
        crate::metrics::encode(registry, crate::metrics::wants_openmetrics(accept));
    ([(header::CONTENT_TYPE, content_type)], text)
}
