//! The route table: a method and a path become a [`Route`]; pure, and
//! fuzzed.

use hyper::Method;

/// Where a request goes, decided from its method and path alone. Pure, so
/// that it is unit-tested and fuzzed; it never indexes into request text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `POST /spec`: a spec's instance, made when missing (`?mode=observe`: only looked up).
    PostSpec,
    /// `POST /spec/clean`: removes a spec's instance.
    CleanSpec,
    /// `OPTIONS` on `/spec`, `/spec/clean`, `/instance/{id}/files` or
    /// `/instance/{id}/check`: a CORS preflight.
    Preflight,
    /// `GET /health`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// `GET /static/{name}`: a file of the browser terminal.
    Static(&'a str),
    /// `GET /instance/{id}`: the terminal page.
    TerminalPage(&'a str),
    /// `GET /start`: the page that posts the spec in its URL's fragment.
    StartPage,
    /// `GET /instance/{id}/ws`: the terminal websocket.
    Websocket(&'a str),
    /// `GET /instance/{id}/files`: graded files.
    Files(&'a str),
    /// `POST /instance/{id}/check`: runs the assignment's check.
    Check(&'a str),
    /// `PUT /instance/{id}/files`: writes a file as the student.
    Upload(&'a str),
    /// `GET /instance/{id}/terminals`: the instance's terminals.
    Terminals(&'a str),
    /// `DELETE /instance/{id}/terminals/{name}`: hangs a terminal up.
    CloseTerminal(&'a str, &'a str),
    /// A known path with a method it does not take: a 405.
    WrongMethod,
    /// Any other request: a 404.
    NotFound,
}

/// The route of `method` and `path`.
pub fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    let get = method == Method::GET;
    match (method, path) {
        (&Method::POST, "/spec") => Route::PostSpec,
        (&Method::POST, "/spec/clean") => Route::CleanSpec,
        (&Method::OPTIONS, "/spec" | "/spec/clean") => Route::Preflight,
        (&Method::GET, "/health") => Route::Health,
        (&Method::GET, "/metrics") => Route::Metrics,
        (&Method::GET, "/start") => Route::StartPage,
        (_, "/spec" | "/spec/clean" | "/health" | "/metrics") => Route::WrongMethod,
        _ => {
            if let Some(name) = path.strip_prefix("/static/").filter(|_| get) {
                return Route::Static(name);
            }
            if let Some(route) = terminals_route(method, path) {
                return route;
            }
            let check = path
                .strip_prefix("/instance/")
                .and_then(|rest| rest.strip_suffix("/check"));
            let files = path
                .strip_prefix("/instance/")
                .and_then(|rest| rest.strip_suffix("/files"));
            match (method, check, files) {
                (&Method::POST, Some(id), _) => return Route::Check(id),
                (&Method::PUT, _, Some(id)) => return Route::Upload(id),
                (&Method::OPTIONS, Some(_), _) | (&Method::OPTIONS, _, Some(_)) => {
                    return Route::Preflight
                }
                _ => {}
            }
            match path.strip_prefix("/instance/").filter(|_| get) {
                Some(rest) => match (rest.strip_suffix("/ws"), rest.strip_suffix("/files")) {
                    (Some(id), _) => Route::Websocket(id),
                    (None, Some(id)) => Route::Files(id),
                    (None, None) => Route::TerminalPage(rest),
                },
                None => Route::NotFound,
            }
        }
    }
}

/// `/instance/{id}/terminals` and `/instance/{id}/terminals/{name}`.
fn terminals_route<'a>(method: &Method, path: &'a str) -> Option<Route<'a>> {
    let rest = path.strip_prefix("/instance/")?;
    let (id, tail) = rest.split_once('/')?;
    let tail = tail.strip_prefix("terminals")?;
    Some(match (method, tail) {
        (&Method::GET, "") => Route::Terminals(id),
        (&Method::OPTIONS, _) => Route::Preflight,
        (&Method::DELETE, name) if name.len() > 1 && name.starts_with('/') => {
            Route::CloseTerminal(id, &name[1..])
        }
        (_, "") => Route::WrongMethod,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terminals_paths_route() {
        let id = "0123456789abcdef0123456789abcdef";
        let list = format!("/instance/{id}/terminals");
        assert_eq!(route(&Method::GET, &list), Route::Terminals(id));
        assert_eq!(route(&Method::POST, &list), Route::WrongMethod);
        assert_eq!(route(&Method::OPTIONS, &list), Route::Preflight);
        let one = format!("/instance/{id}/terminals/tab-2");
        assert_eq!(
            route(&Method::DELETE, &one),
            Route::CloseTerminal(id, "tab-2")
        );
        assert_eq!(route(&Method::OPTIONS, &one), Route::Preflight);
        // Like any other unknown path under an instance: the page, whose
        // lookup answers 404.
        assert_eq!(route(&Method::GET, &one), Route::TerminalPage(&one[10..]));
        let page = format!("/instance/{id}/terminalsx");
        assert_eq!(route(&Method::GET, &page), Route::TerminalPage(&page[10..]));
    }

    #[test]
    pub(super) fn routes_by_method_and_path() {
        let id = "0123456789abcdef0123456789abcdef";
        let ws = format!("/instance/{id}/ws");
        let page = format!("/instance/{id}");
        assert_eq!(route(&Method::POST, "/spec"), Route::PostSpec);
        assert_eq!(route(&Method::OPTIONS, "/spec/clean"), Route::Preflight);
        assert_eq!(route(&Method::GET, "/spec"), Route::WrongMethod);
        assert_eq!(route(&Method::GET, &ws), Route::Websocket(id));
        assert_eq!(route(&Method::GET, &page), Route::TerminalPage(id));
        assert_eq!(route(&Method::POST, &ws), Route::NotFound);
        assert_eq!(route(&Method::GET, "/static/a.js"), Route::Static("a.js"));
        let check = format!("/instance/{id}/check");
        assert_eq!(route(&Method::POST, &check), Route::Check(id));
        assert_eq!(route(&Method::OPTIONS, &check), Route::Preflight);
        let files = format!("/instance/{id}/files");
        assert_eq!(route(&Method::PUT, &files), Route::Upload(id));
        assert_eq!(route(&Method::OPTIONS, &files), Route::Preflight);
        assert_eq!(route(&Method::GET, &files), Route::Files(id));
        assert_eq!(
            route(&Method::GET, &check),
            Route::TerminalPage(&check[10..])
        );
    }

    #[test]
    pub(super) fn short_and_odd_paths_do_not_panic() {
        // `/instance/ws` once sliced "/instance/".len()..len-"/ws".len(): 10 > 9.
        let get = |path| route(&Method::GET, path);
        assert_eq!(get("/instance/ws"), Route::TerminalPage("ws"));
        assert_eq!(get("/instance//ws"), Route::Websocket(""));
        assert_eq!(get("/instance/"), Route::TerminalPage(""));
        for path in ["/instance", "/ws", "", "/"] {
            assert_eq!(get(path), Route::NotFound, "{path}");
        }
    }
}
