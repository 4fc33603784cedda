//! The one route table. Routing, the 404/405 answers and the latency histogram's `route`
//! labels are all read from [`ROUTES`]: a path is its route's pattern, with `{id}` for a user
//! id in its one canonical spelling.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::error::ApiError;
use super::forward;
use super::handlers::{self as h, Ctx};
use super::portal;
use super::respond::Body;
use super::App;
use crate::metrics::{write_family, Histogram};
use crate::model::UserId;

/// What a handler answers.
pub(super) type Answer = Result<Response<Body>, ApiError>;
/// A handler's answer to come.
pub(super) type Later = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// How a route answers.
#[derive(Clone, Copy)]
pub(super) enum Handler {
    /// Answers at once, without awaiting anything (verify, health, metrics).
    Now(fn(&Ctx) -> Answer),
    /// Awaits a body, the hashing pool or a commit.
    Later(fn(Ctx) -> Later),
}

/// Which methods a route answers.
#[derive(Clone, Copy)]
pub(super) enum Methods {
    /// Every method alike.
    Any(Handler),
    /// These; any other method is 405.
    Only(&'static [(Method, Handler)]),
}

impl Methods {
    /// The `Allow` header of a 405: the methods served, in the table's order.
    fn allow(self) -> String {
        match self {
            // Never answers 405.
            Methods::Any(_) => String::new(),
            Methods::Only(methods) => methods
                .iter()
                .map(|(method, _)| method.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// One path and how it is served.
pub(super) struct Route {
    /// The path, with `{id}` standing for a user id; also the latency label.
    pub(super) pattern: &'static str,
    pub(super) methods: Methods,
}

macro_rules! later {
    ($handler:path) => {
        Handler::Later(|cx| Box::pin($handler(cx)))
    };
}

/// Every route latchd serves.
pub(super) const ROUTES: &[Route] = &[
    Route {
        pattern: "/",
        methods: Methods::Only(&[(Method::GET, later!(portal::home))]),
    },
    Route {
        pattern: "/healthz",
        methods: Methods::Only(&[(Method::GET, Handler::Now(h::healthz))]),
    },
    Route {
        pattern: "/login",
        methods: Methods::Only(&[
            (Method::GET, later!(portal::login_form)),
            (Method::POST, later!(portal::sign_in)),
        ]),
    },
    Route {
        pattern: "/login/totp",
        methods: Methods::Only(&[(Method::POST, later!(portal::sign_in_code))]),
    },
    Route {
        pattern: "/logout",
        methods: Methods::Only(&[(Method::POST, later!(portal::sign_out))]),
    },
    Route {
        pattern: "/metrics",
        methods: Methods::Only(&[(Method::GET, Handler::Now(h::metrics))]),
    },
    Route {
        pattern: "/openapi.json",
        methods: Methods::Only(&[(Method::GET, Handler::Now(h::openapi))]),
    },
    Route {
        pattern: "/totp",
        methods: Methods::Only(&[(Method::POST, later!(portal::totp_begin))]),
    },
    Route {
        pattern: "/totp/confirm",
        methods: Methods::Only(&[(Method::POST, later!(portal::totp_confirm))]),
    },
    Route {
        pattern: "/totp/disable",
        methods: Methods::Only(&[(Method::POST, later!(portal::totp_disable))]),
    },
    Route {
        pattern: "/v1/admin/audit",
        methods: Methods::Only(&[(Method::GET, later!(h::admin_audit))]),
    },
    Route {
        pattern: "/v1/admin/users",
        methods: Methods::Only(&[(Method::GET, later!(h::admin_list_users))]),
    },
    Route {
        pattern: "/v1/admin/users/{id}",
        methods: Methods::Only(&[(Method::DELETE, later!(h::admin_delete))]),
    },
    Route {
        pattern: "/v1/admin/users/{id}/revoke",
        methods: Methods::Only(&[(Method::POST, later!(h::admin_revoke))]),
    },
    Route {
        pattern: "/v1/admin/users/{id}/roles",
        methods: Methods::Only(&[(Method::PUT, later!(h::admin_set_roles))]),
    },
    Route {
        pattern: "/v1/admin/users/{id}/sessions",
        methods: Methods::Only(&[(Method::GET, later!(h::admin_user_sessions))]),
    },
    Route {
        pattern: "/v1/admin/users/{id}/totp",
        methods: Methods::Only(&[(Method::DELETE, later!(h::admin_totp_reset))]),
    },
    Route {
        pattern: "/v1/auth/login",
        methods: Methods::Only(&[(Method::POST, later!(h::login))]),
    },
    Route {
        pattern: "/v1/auth/login/mfa",
        methods: Methods::Only(&[(Method::POST, later!(h::login_mfa))]),
    },
    Route {
        pattern: "/v1/auth/logout",
        methods: Methods::Only(&[(Method::POST, later!(h::logout))]),
    },
    Route {
        pattern: "/v1/auth/logout-all",
        methods: Methods::Only(&[(Method::POST, later!(h::logout_all))]),
    },
    Route {
        pattern: "/v1/auth/me",
        methods: Methods::Only(&[(Method::GET, later!(h::me))]),
    },
    Route {
        pattern: "/v1/auth/refresh",
        methods: Methods::Only(&[(Method::POST, later!(h::refresh))]),
    },
    Route {
        // Forward-auth proxies send HEAD, or the original request's method: all are the same.
        pattern: "/v1/auth/verify",
        methods: Methods::Any(Handler::Now(forward::verify)),
    },
    Route {
        pattern: "/v1/oauth/introspect",
        methods: Methods::Only(&[(Method::POST, later!(h::introspect))]),
    },
    Route {
        pattern: "/v1/oauth/revoke",
        methods: Methods::Only(&[(Method::POST, later!(h::revoke_token))]),
    },
    Route {
        pattern: "/v1/users",
        methods: Methods::Only(&[(Method::POST, later!(h::register))]),
    },
    Route {
        pattern: "/v1/users/me/password",
        methods: Methods::Only(&[(Method::PUT, later!(h::change_password))]),
    },
    Route {
        pattern: "/v1/users/me/sessions",
        methods: Methods::Only(&[(Method::GET, later!(h::my_sessions))]),
    },
    Route {
        pattern: "/v1/users/me/sessions/{id}",
        methods: Methods::Only(&[(Method::DELETE, later!(h::end_my_session))]),
    },
    Route {
        pattern: "/v1/users/me/totp",
        methods: Methods::Only(&[
            (Method::POST, later!(h::totp_begin)),
            (Method::DELETE, later!(h::totp_disable)),
        ]),
    },
    Route {
        pattern: "/v1/users/me/totp/confirm",
        methods: Methods::Only(&[(Method::POST, later!(h::totp_confirm))]),
    },
];

/// The label of requests that matched no route; a raw path is never a label, so a client
/// cannot add series (or put a token it pasted into a URL into the output).
const OTHER: &str = "other";

/// The route `path` matches, with the user id it names, if any.
pub(super) fn find(path: &str) -> Option<(usize, Option<UserId>)> {
    ROUTES
        .iter()
        .zip(ID_PARTS.iter())
        .enumerate()
        .find_map(|(i, (route, parts))| match parts {
            None => (route.pattern == path).then_some((i, None)),
            Some((prefix, suffix)) => {
                let id = path.strip_prefix(prefix)?.strip_suffix(suffix)?;
                UserId::parse(id).map(|id| (i, Some(id)))
            }
        })
}

/// Each route's pattern split at its `{id}` (text before, text after), in the table's order;
/// split once, as searching every pattern on every request was a visible share of a verify.
static ID_PARTS: LazyLock<Vec<Option<(&str, &str)>>> = LazyLock::new(|| {
    ROUTES
        .iter()
        .map(|route| route.pattern.split_once("{id}"))
        .collect()
});

/// The methods the route `found` (from [`find`]) serves, as a preflight's
/// `Access-Control-Allow-Methods` lists them; `None` for no route.
pub(super) fn methods_of(found: Option<(usize, Option<UserId>)>) -> Option<String> {
    let (index, _) = found?;
    Some(match ROUTES[index].methods {
        // Forward-auth answers every method; a page has no reason to send it more than these.
        Methods::Any(_) => "GET, HEAD".to_owned(),
        methods @ Methods::Only(_) => methods.allow(),
    })
}

/// Answers one request on the route `found` (from [`find`]). Every error becomes its JSON
/// answer here.
pub(super) async fn dispatch(
    found: Option<(usize, Option<UserId>)>,
    req: Request<Incoming>,
    app: Arc<App>,
    peer: SocketAddr,
) -> Response<Body> {
    let answer = match found {
        None => Err(ApiError::not_found()),
        Some((index, id)) => {
            let methods = ROUTES[index].methods;
            let handler = match methods {
                Methods::Any(handler) => Some(handler),
                Methods::Only(methods) => methods
                    .iter()
                    .find(|(m, _)| m == req.method())
                    .map(|(_, handler)| *handler),
            };
            let cx = Ctx { req, app, peer, id };
            match handler {
                None => Ok(ApiError::method_not_allowed(&methods.allow())),
                Some(Handler::Now(handle)) => handle(&cx),
                Some(Handler::Later(handle)) => handle(cx).await,
            }
        }
    };
    answer.unwrap_or_else(ApiError::into_response)
}

/// One latency histogram per route, and one for everything else.
pub(super) struct RequestTimes {
    routes: Vec<Histogram>,
    other: Histogram,
}

impl RequestTimes {
    pub(super) fn new() -> Self {
        Self {
            routes: ROUTES.iter().map(|_| Histogram::new()).collect(),
            other: Histogram::new(),
        }
    }

    /// Records how long a request took on the route `found` (from [`find`]).
    pub(super) fn observe(&self, found: Option<(usize, Option<UserId>)>, elapsed: Duration) {
        match found {
            Some((index, _)) => self.routes[index].observe(elapsed),
            None => self.other.observe(elapsed),
        }
    }

    /// `latchd_request_duration_seconds`, every route's series in the table's order.
    pub(super) fn render_into(&self, out: &mut String) {
        let name = "latchd_request_duration_seconds";
        let _ = write_family(
            out,
            name,
            "histogram",
            "Time from request head to response, by route.",
        );
        for (route, times) in ROUTES.iter().zip(&self.routes) {
            let _ = times.write_to(out, name, route.pattern);
        }
        let _ = self.other.write_to(out, name, OTHER);
    }
}

/// Operations of `openapi.json` that no route serves yet, each with the work that adds it.
/// The description is the contract (API.md v2 names these routes), so they are described
/// before they exist; `openapi.json` tags each of them `not-yet-served`, which schemathesis
/// filters out. When a route lands, its entry goes and so does its tag: the test below fails
/// until both are gone. This list only ever shrinks, to empty.
#[cfg(test)]
const NOT_YET_SERVED: &[(&str, &str)] = &[];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const ID: &str = "00000000-0000-4000-8000-000000000000";

    /// The methods an OpenAPI path item may describe, as HTTP spells them.
    const OPENAPI_METHODS: [&str; 8] = [
        "GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE",
    ];

    type Pairs = BTreeSet<(String, String)>;

    /// Every (method, path) of the committed `openapi.json`, and those tagged
    /// `not-yet-served`.
    fn described() -> (Pairs, Pairs) {
        let doc: serde_json::Value =
            serde_json::from_str(h::OPENAPI_JSON).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths is an object");
        let (mut all, mut later) = (Pairs::new(), Pairs::new());
        for (path, item) in paths {
            for method in OPENAPI_METHODS {
                let Some(operation) = item.get(method.to_ascii_lowercase()) else {
                    continue;
                };
                let pair = (method.to_owned(), path.clone());
                let tags = operation["tags"]
                    .as_array()
                    .expect("every operation has tags");
                if tags.iter().any(|t| t == "not-yet-served") {
                    later.insert(pair.clone());
                }
                all.insert(pair);
            }
        }
        (all, later)
    }

    /// Every (method, path) the route table serves; `Methods::Any` stands for every method
    /// the description lists for its path, which must include GET and HEAD.
    fn served(described: &Pairs) -> Pairs {
        let mut pairs = Pairs::new();
        for route in ROUTES {
            match route.methods {
                Methods::Only(methods) => {
                    for (method, _) in methods {
                        pairs.insert((method.as_str().to_owned(), route.pattern.to_owned()));
                    }
                }
                Methods::Any(_) => {
                    let listed: Vec<&String> = described
                        .iter()
                        .filter(|(_, path)| path == route.pattern)
                        .map(|(method, _)| method)
                        .collect();
                    for must in ["GET", "HEAD"] {
                        assert!(
                            listed.iter().any(|m| *m == must),
                            "{} answers every method: openapi.json must describe at least \
                             GET and HEAD for it, it lists {listed:?}",
                            route.pattern
                        );
                    }
                    for method in listed {
                        pairs.insert((method.clone(), route.pattern.to_owned()));
                    }
                }
            }
        }
        pairs
    }

    #[test]
    fn openapi_json_describes_exactly_the_routes_served() {
        let (described, tagged) = described();
        let served = served(&described);
        let later: Pairs = NOT_YET_SERVED
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(
            later.len(),
            NOT_YET_SERVED.len(),
            "NOT_YET_SERVED has a repeat"
        );

        let landed: Vec<_> = later.intersection(&served).collect();
        assert!(
            landed.is_empty(),
            "served now, so remove them from NOT_YET_SERVED (and their `not-yet-served` tag \
             from openapi.json): {landed:?}"
        );
        let stale: Vec<_> = later.difference(&described).collect();
        assert!(
            stale.is_empty(),
            "NOT_YET_SERVED names operations openapi.json does not describe: {stale:?}"
        );
        assert_eq!(
            tagged, later,
            "the operations tagged `not-yet-served` in openapi.json and NOT_YET_SERVED differ"
        );

        let expected: Pairs = described.difference(&later).cloned().collect();
        let undescribed: Vec<_> = served.difference(&expected).collect();
        assert!(
            undescribed.is_empty(),
            "served but not described in openapi.json: {undescribed:?}"
        );
        let unserved: Vec<_> = expected.difference(&served).collect();
        assert!(
            unserved.is_empty(),
            "described in openapi.json but not served (and not in NOT_YET_SERVED): {unserved:?}"
        );
    }

    #[test]
    fn every_path_finds_its_own_route() {
        for (i, route) in ROUTES.iter().enumerate() {
            let path = route.pattern.replace("{id}", ID);
            let found = find(&path).map(|(index, _)| index);
            assert_eq!(found, Some(i), "{path}");
        }
        let mut patterns: Vec<&str> = ROUTES.iter().map(|r| r.pattern).collect();
        patterns.sort_unstable();
        patterns.dedup();
        assert_eq!(patterns.len(), ROUTES.len(), "two routes share a pattern");
        assert!(!patterns.contains(&OTHER));
    }

    #[test]
    fn a_405_allows_the_methods_of_its_route() {
        let allow = |path| ROUTES[find(path).unwrap().0].methods.allow();
        assert_eq!(allow("/login"), "GET, POST");
        assert_eq!(allow("/v1/users"), "POST");
        assert_eq!(allow(&format!("/v1/admin/users/{ID}")), "DELETE");
    }

    #[test]
    fn ids_are_read_from_their_segment() {
        let (_, id) = find(&format!("/v1/admin/users/{ID}/revoke")).unwrap();
        assert_eq!(id.map(|id| id.to_string()).as_deref(), Some(ID));
    }

    #[test]
    fn unknown_paths_match_no_route() {
        for path in [
            "/v1",
            "/metrics/",
            "/v1/auth/verify?token=x",
            "/v1/admin/users/not-a-uuid",
            "/v1/admin/users/00000000-0000-4000-8000-00000000000A",
            "/v1/admin/users/urn:uuid:00000000-0000-4000-8000-000000000000",
            "/v1/admin/users/00000000000040008000000000000000/revoke",
            "/v1/admin/users/00000000-0000-4000-8000-000000000000/elsewhere",
            "/v1/admin/users/00000000-0000-4000-8000-000000000000/x/revoke",
            "/eyJhbGciOiJIUzI1NiJ9.e30.sig",
        ] {
            assert_eq!(find(path).map(|(i, _)| ROUTES[i].pattern), None, "{path}");
        }
    }

    #[test]
    fn request_times_have_one_series_per_route_and_other() {
        let times = RequestTimes::new();
        times.observe(find("/v1/auth/login"), Duration::from_millis(3));
        times.observe(None, Duration::from_millis(1));
        let mut text = String::new();
        times.render_into(&mut text);
        for route in ROUTES.iter().map(|r| r.pattern).chain([OTHER]) {
            let count = format!("latchd_request_duration_seconds_count{{route=\"{route}\"}} ");
            assert!(text.contains(&count), "{route}");
        }
        assert!(text.contains("_count{route=\"/v1/auth/login\"} 1\n"));
        assert!(text.contains("_count{route=\"other\"} 1\n"));
    }
}
