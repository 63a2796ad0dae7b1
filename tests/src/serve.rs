//! Serves a function's handler over HTTP on a free loopback port, as API Gateway (or
//! `cargo lambda watch`) does, so real HTTP clients (the `openai` SDK, curl) reach it.

use std::future::Future;
use std::net::SocketAddr;

use axum::serve::ListenerExt;
use invoke_with_cache::ResponseBody;
use lambda_http::http::Response;

/// The largest request body accepted, as API Gateway's payload limit.
const MAX_BODY: usize = 10 * 1024 * 1024;

/// Starts serving `handle` in the background; the address is ready when this returns.
pub async fn serve<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(lambda_http::Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ResponseBody>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("bound address");
    // Server-sent events are small frames: each goes out at once.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let router = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let handle = handle.clone();
        async move {
            let (parts, body) = request.into_parts();
            let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
                Ok(bytes) => bytes,
                Err(error) => {
                    let mut response = Response::new(axum::body::Body::from(error.to_string()));
                    *response.status_mut() = lambda_http::http::StatusCode::PAYLOAD_TOO_LARGE;
                    return response;
                }
            };
            let request =
                lambda_http::Request::from_parts(parts, lambda_http::Body::from(bytes.to_vec()));
            handle(request).await.map(axum::body::Body::new)
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    address
}
