//! The control API's request counter and latency histogram: a route layer,
//! so the label is the route as the router matched it (`/services/{id}`),
//! never the path a client sent.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::{RequestLabels, RouteLabel};
use crate::runtime::Runtime;

pub async fn track(State(rt): State<Arc<Runtime>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    // The router matches only the methods it knows: any other is refused
    // before this layer runs, so the label has a handful of values.
    let method = request.method().as_str().to_string();
    let started = tokio::time::Instant::now();
    let response = next.run(request).await;
    let metrics = &rt.metrics;
    metrics
        .api_latency
        .get_or_create(&RouteLabel {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .api_requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
