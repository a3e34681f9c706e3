//! Engine API version negotiation, as dockerd does it: every route answers
//! with and without a `/v{major}.{minor}` prefix, a version outside the
//! range served is refused with dockerd's 400, and `_ping` tells a client
//! which version to speak (`API-Version`) and whether this node manages a
//! swarm (`Swarm`). See docs/api.md, "API versions".

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bollard::models::{SystemVersion, SystemVersionComponents, SystemVersionPlatform};

use super::ApiError;
use crate::runtime::Runtime;

/// The newest Engine API version whose swarm objects this server speaks.
/// 1.41 is the first with everything the docker 28 client's swarm commands
/// ask for (replicated jobs, `service ls`'s replica counts from
/// `ServiceStatus`); later versions only add fields shoal does not act on.
pub const API_VERSION: ApiVersion = ApiVersion(1, 41);
/// The oldest version served (dockerd's own minimum).
pub const MIN_API_VERSION: ApiVersion = ApiVersion(1, 24);

/// An Engine API version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    /// `1.41` (no leading `v`).
    pub fn parse(text: &str) -> Option<ApiVersion> {
        let (major, minor) = text.split_once('.')?;
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(major) || !digits(minor) {
            return None;
        }
        Some(ApiVersion(major.parse().ok()?, minor.parse().ok()?))
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// Splits `/v1.41/services` into the version and `/services`. A path whose
/// first segment is not `v` followed by a version is returned as it is.
fn split_prefix(path: &str) -> Option<(ApiVersion, &str)> {
    let rest = path.strip_prefix("/v")?;
    let (version, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    Some((ApiVersion::parse(version)?, tail))
}

/// Checks a requested version against the range served, in dockerd's words.
pub fn check(requested: ApiVersion) -> Result<(), ApiError> {
    if requested > API_VERSION {
        return Err(ApiError::bad_request(format!(
            "client version {requested} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    if requested < MIN_API_VERSION {
        return Err(ApiError::bad_request(format!(
            "client version {requested} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    Ok(())
}

/// Middleware run before routing: takes the version prefix off the path (the
/// routes are written without it) and refuses versions outside the range.
pub async fn negotiate(mut req: Request, next: Next) -> Response {
    let uri = req.uri().clone();
    if let Some((requested, tail)) = split_prefix(uri.path()) {
        if let Err(e) = check(requested) {
            return e.into_response();
        }
        // Handlers that answer docker's clients differently (log framing)
        // know them by the version they asked for.
        req.extensions_mut().insert(requested);
        let tail = if tail.is_empty() { "/" } else { tail };
        let path_and_query = match uri.query() {
            Some(q) => format!("{tail}?{q}"),
            None => tail.to_string(),
        };
        let mut parts = uri.into_parts();
        match path_and_query.parse() {
            Ok(pq) => parts.path_and_query = Some(pq),
            Err(_) => return ApiError::bad_request("malformed request path").into_response(),
        }
        match axum::http::Uri::from_parts(parts) {
            Ok(new) => *req.uri_mut() = new,
            Err(_) => return ApiError::bad_request("malformed request path").into_response(),
        }
    }
    let mut resp = next.run(req).await;
    // dockerd names itself and its version on every answer.
    let headers = resp.headers_mut();
    headers.insert(header::SERVER, HeaderValue::from_static(SERVER_HEADER));
    if let Ok(v) = HeaderValue::from_str(&API_VERSION.to_string()) {
        headers.insert("Api-Version", v);
    }
    resp
}

const SERVER_HEADER: &str = concat!("shoal/", env!("CARGO_PKG_VERSION"), " (linux)");

/// The `Swarm` header of `_ping`: what this node is in its swarm.
pub fn swarm_state(rt: &Runtime) -> &'static str {
    if rt.is_locked() {
        return "locked";
    }
    match rt.identity() {
        None => "inactive",
        Some(id) if id.manager => "active/manager",
        Some(_) => "active/worker",
    }
}

/// `GET|HEAD /_ping`: `OK` and the headers a client negotiates with.
pub async fn ping(State(rt): State<Arc<Runtime>>) -> Response {
    let mut resp = "OK".into_response();
    let headers = resp.headers_mut();
    headers.insert("Ostype", HeaderValue::from_static("linux"));
    headers.insert("Docker-Experimental", HeaderValue::from_static("false"));
    headers.insert("Swarm", HeaderValue::from_static(swarm_state(&rt)));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// `GET /version`: dockerd's `Version` object, describing shoal.
pub async fn version() -> (StatusCode, Json<SystemVersion>) {
    let version = env!("CARGO_PKG_VERSION").to_string();
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
    .to_string();
    let api = API_VERSION.to_string();
    let min = MIN_API_VERSION.to_string();
    (
        StatusCode::OK,
        Json(SystemVersion {
            platform: Some(SystemVersionPlatform {
                name: "shoal".into(),
            }),
            components: Some(vec![SystemVersionComponents {
                name: "Engine".into(),
                version: version.clone(),
                details: Some(
                    [
                        ("ApiVersion", api.clone()),
                        ("MinAPIVersion", min.clone()),
                        ("Os", "linux".into()),
                        ("Arch", arch.clone()),
                        ("KernelVersion", kernel.clone()),
                        ("GitCommit", String::new()),
                        ("GoVersion", String::new()),
                        ("Experimental", "false".into()),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                ),
            }]),
            version: Some(version),
            api_version: Some(api),
            min_api_version: Some(min),
            git_commit: Some(String::new()),
            go_version: Some(String::new()),
            os: Some("linux".into()),
            arch: Some(arch),
            kernel_version: Some(kernel),
            build_time: Some(String::new()),
            experimental: None,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_split_and_checked() {
        assert_eq!(
            split_prefix("/v1.41/services"),
            Some((ApiVersion(1, 41), "/services"))
        );
        assert_eq!(split_prefix("/v1.24"), Some((ApiVersion(1, 24), "")));
        assert_eq!(split_prefix("/services"), None);
        assert_eq!(split_prefix("/volumes"), None);
        assert_eq!(split_prefix("/vx.1/services"), None);
        assert!(check(ApiVersion(1, 41)).is_ok());
        assert!(check(ApiVersion(1, 24)).is_ok());
        assert!(check(ApiVersion(1, 42))
            .unwrap_err()
            .message
            .contains("is too new. Maximum supported API version is 1.41"));
        assert!(check(ApiVersion(1, 12))
            .unwrap_err()
            .message
            .contains("is too old"));
    }
}
