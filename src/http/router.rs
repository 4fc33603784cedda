//! The router: one `match` on method and path.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::error::ApiError;
use super::handlers;
use super::respond::{self, Body};
use super::App;
use crate::metrics::Route;
use crate::store::UserId;

/// Answers one request. Every error becomes its JSON answer here.
pub(super) async fn route(
    req: Request<Incoming>,
    app: Arc<App>,
    peer: SocketAddr,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let answer = match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => Ok(respond::empty(StatusCode::OK)),
        (&Method::GET, "/metrics") => handlers::metrics(&req, &app, peer),
        // Forward-auth proxies send HEAD, or the original request's method: all are the same.
        (_, "/v1/auth/verify") => handlers::verify(&req, &app),
        (&Method::POST, "/v1/users") => handlers::register(req, app, peer).await,
        (&Method::POST, "/v1/auth/login") => handlers::login(req, app, peer).await,
        (&Method::POST, "/v1/auth/refresh") => handlers::refresh(req, app).await,
        (&Method::POST, "/v1/auth/logout") => handlers::logout(req, app).await,
        (&Method::POST, "/v1/auth/logout-all") => handlers::logout_all(req, app).await,
        (&Method::GET, "/v1/auth/me") => handlers::me(req, app).await,
        (&Method::PUT, "/v1/users/me/password") => handlers::change_password(req, app, peer).await,
        (&Method::GET, "/v1/admin/users") => handlers::admin_list_users(req, app).await,
        (method, path) => match admin_user_route(path) {
            Some((id, "")) if method == Method::DELETE => {
                handlers::admin_delete(req, app, id).await
            }
            Some((id, "/revoke")) if method == Method::POST => {
                handlers::admin_revoke(req, app, id).await
            }
            Some((_, "" | "/revoke")) => Err(ApiError::method_not_allowed()),
            None if KNOWN_PATHS.contains(&path) => Err(ApiError::method_not_allowed()),
            Some(_) | None => Err(ApiError::not_found()),
        },
    };
    answer.unwrap_or_else(ApiError::into_response)
}

/// The metrics label of a request path: one of a fixed set, never the path itself, so a
/// client cannot add series (or put a token it pasted into a URL into the output).
pub(super) fn route_of(path: &str) -> Route {
    match path {
        "/healthz" => Route::Healthz,
        "/metrics" => Route::Metrics,
        "/v1/auth/verify" => Route::Verify,
        "/v1/users" => Route::Users,
        "/v1/auth/login" => Route::Login,
        "/v1/auth/refresh" => Route::Refresh,
        "/v1/auth/logout" => Route::Logout,
        "/v1/auth/logout-all" => Route::LogoutAll,
        "/v1/auth/me" => Route::Me,
        "/v1/users/me/password" => Route::Password,
        "/v1/admin/users" => Route::AdminUsers,
        path => match admin_user_route(path) {
            Some((_, "")) => Route::AdminUser,
            Some((_, "/revoke")) => Route::AdminUserRevoke,
            Some(_) | None => Route::Other,
        },
    }
}

const KNOWN_PATHS: &[&str] = &[
    "/healthz",
    "/metrics",
    "/v1/auth/verify",
    "/v1/users",
    "/v1/auth/login",
    "/v1/auth/refresh",
    "/v1/auth/logout",
    "/v1/auth/logout-all",
    "/v1/auth/me",
    "/v1/users/me/password",
    "/v1/admin/users",
];

/// `/v1/admin/users/{id}{rest}` -> (id, rest). An id that is not a UUID in its one canonical
/// spelling (lowercase, hyphenated) matches no user, as the token verifier would refuse it.
fn admin_user_route(path: &str) -> Option<(UserId, &str)> {
    let rest = path.strip_prefix("/v1/admin/users/")?;
    let (id, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let id = crate::token::parse_uuid(id)?;
    Some((UserId(id), tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_path_has_its_own_metrics_route() {
        let mut routes: Vec<Route> = KNOWN_PATHS.iter().map(|p| route_of(p)).collect();
        routes.push(route_of(
            "/v1/admin/users/00000000-0000-4000-8000-000000000000",
        ));
        routes.push(route_of(
            "/v1/admin/users/00000000-0000-4000-8000-000000000000/revoke",
        ));
        assert!(!routes.contains(&Route::Other), "{routes:?}");
        let mut labels: Vec<&str> = routes.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), routes.len(), "two paths share a label");
        assert_eq!(routes.len() + 1, Route::ALL.len(), "only `other` is extra");
    }

    #[test]
    fn unknown_paths_are_labelled_other() {
        for path in [
            "/",
            "/v1",
            "/metrics/",
            "/v1/auth/verify?token=x",
            "/v1/admin/users/not-a-uuid",
            "/v1/admin/users/00000000-0000-4000-8000-00000000000A",
            "/v1/admin/users/urn:uuid:00000000-0000-4000-8000-000000000000",
            "/v1/admin/users/00000000000040008000000000000000/revoke",
            "/v1/admin/users/00000000-0000-4000-8000-000000000000/elsewhere",
            "/eyJhbGciOiJIUzI1NiJ9.e30.sig",
        ] {
            assert_eq!(route_of(path), Route::Other, "{path}");
        }
    }
}
