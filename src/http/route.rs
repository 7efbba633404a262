//! The endpoints and the paths they answer on. One macro lists each route
//! once: the enum, its path and `Route::ALL` come from the same line, so a
//! route cannot exist without being routed to.

/// Every endpoint answers these methods.
pub const ALLOWED_METHODS: &str = "GET, HEAD";

macro_rules! routes {
    ($($(#[$doc:meta])* $name:ident => $path:literal,)+) => {
        /// The endpoints. Routing is by path first, so a wrong method gets 405, not 404.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Route {
            $($(#[$doc])* $name,)+
        }

        impl Route {
            /// Every route, in the order listed.
            pub const ALL: &[Route] = &[$(Route::$name,)+];

            /// The path it answers on.
            pub fn path(self) -> &'static str {
                match self {
                    $(Route::$name => $path,)+
                }
            }
        }
    };
}

routes! {
    /// `GET /`: counts a hit.
    Hit => "/",
    /// `GET /showcount`: the counter.
    ShowCount => "/showcount",
    /// `GET /healthz`: the process is alive.
    Healthz => "/healthz",
    /// `GET /readyz`: the database answers.
    Readyz => "/readyz",
}

impl Route {
    /// The query string is ignored: no endpoint takes parameters.
    pub fn from_path(path: &str) -> Option<Route> {
        let path = without_query(path);
        Route::ALL
            .iter()
            .copied()
            .find(|route| route.path() == path)
    }

    /// A fixed label for metrics: a client's path never becomes one.
    pub fn label(path: &str) -> &'static str {
        Route::from_path(path).map_or("other", Route::path)
    }
}

/// A request target's path, without its query string.
pub fn without_query(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_routes_ignoring_the_query() {
        let cases = [
            ("/", Some(Route::Hit)),
            ("/?utm=x", Some(Route::Hit)),
            ("/showcount", Some(Route::ShowCount)),
            ("/showcount?x=1", Some(Route::ShowCount)),
            ("/healthz", Some(Route::Healthz)),
            ("/readyz", Some(Route::Readyz)),
            ("/showcount/", None),
            ("//", None),
            ("/SHOWCOUNT", None),
            ("/../etc/passwd", None),
            ("", None),
        ];
        for (path, expected) in cases {
            assert_eq!(Route::from_path(path), expected, "path {path:?}");
        }
    }

    #[test]
    fn every_route_is_found_by_its_own_path() {
        for &route in Route::ALL {
            assert_eq!(Route::from_path(route.path()), Some(route), "{route:?}");
        }
    }

    #[test]
    fn a_client_path_never_becomes_a_label() {
        assert_eq!(Route::label("/?x=1"), "/");
        assert_eq!(Route::label("/showcount"), "/showcount");
        assert_eq!(Route::label("/../etc/passwd"), "other");
        assert_eq!(Route::label("/\u{7f}\"} 1\n"), "other");
    }
}
