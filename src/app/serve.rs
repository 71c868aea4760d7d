//! The HTTP accept loop. `axum::serve` has no header read time-out, so connections are served
//! by hyper's HTTP/1 builder directly with one (`http.header_timeout`): a client that opens a
//! connection and never finishes its request line or headers is disconnected instead of
//! holding a socket for ever. The same time-out closes an idle kept-alive connection (hyper
//! starts it again when an answer is done: waiting for the next request is reading its
//! headers), so keep-alive costs a socket for at most `header_timeout`. At most
//! `http.max_connections` are served at once: past that, `accept` waits (the kernel's backlog
//! holds the rest), so a flood of sockets cannot use up file descriptors. Every connection is watched, so a stop lets the requests in hand
//! finish, closes idle connections, and returns once all are done.

use std::io;
use std::time::Duration;

use anyhow::Result;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `router` on `listener` until `stop` fires, then waits for open connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    max_connections: usize,
    stop: CancellationToken,
) -> Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        // A slot first, so that past the cap nothing more is accepted.
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e, &stop).await;
                    continue;
                }
            },
        };
        // The peer address, for the hooks' source-address allow-lists.
        let routed = tower::ServiceExt::map_request(
            router.clone(),
            move |mut r: hyper::Request<hyper::body::Incoming>| {
                r.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                r
            },
        );
        let service = TowerToHyperService::new(routed);
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        // Not orphaned: `graceful.shutdown()` below waits for every watched connection.
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = conn.await {
                // Header time-outs, resets, malformed requests: the client's problem.
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A failed `accept`: a connection that died in the backlog is nothing; anything else (out of
/// file descriptors, say) is logged and retried after a second, as `axum::serve` does.
async fn accept_failed(e: io::Error, stop: &CancellationToken) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accepting an HTTP connection failed (too many open files? raise `ulimit -n`); retrying in 1 s");
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
    }
}
