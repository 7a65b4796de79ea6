//! `reagent serve`: the workspace in a browser (axum on a current-thread
//! tokio runtime). Pages are rendered here from the store, every string
//! through `campaign::html::esc`; decisions go through the same governance
//! code as the CLI, as the person the request authenticates.
//!
//! Who may do what:
//! - A token (32 random bytes, printed once at start and kept 0600 in
//!   `.reagent/serve.token`): `/login?token=…` sets an HttpOnly,
//!   SameSite=Strict cookie; `Authorization: Bearer …` works too. The
//!   person is the OS user running the server.
//! - Or `--auth header:NAME`: a reverse proxy in front authenticates and
//!   names the person in that header.
//! - Without `--auth`, only a loopback address is served.
//! - State changes are POSTs carrying the server's CSRF token; the pages'
//!   Content-Security-Policy runs only the server's own script.
//!
//! Live updates: the driver pokes `.reagent/watch.sock` (a datagram) after
//! each pass (`workspace::poke_watchers`); the server turns each poke into a
//! server-sent event, and the page's script refetches its `<main>`.
//!
//! The store is single-process: each request opens it (waiting its turn
//! while a driver holds it) and lets go before answering.

mod pages;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::governance::Identity;
use crate::workspace::Workspace;

/// How requests are authenticated.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// The workspace's serve token.
    Token,
    /// A header a reverse proxy sets to the person's name.
    Header(String),
}

impl Auth {
    /// `token` or `header:NAME`.
    pub fn parse(s: &str) -> anyhow::Result<Auth> {
        match s.split_once(':') {
            None if s == "token" => Ok(Auth::Token),
            Some(("header", name))
                if !name.is_empty()
                    && name.len() <= 64
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') =>
            {
                Ok(Auth::Header(name.to_string()))
            }
            _ => bail!(
                "--auth {s:?}: expected `token` or `header:NAME` (a header your reverse proxy sets to the person's name, e.g. header:X-Remote-User)"
            ),
        }
    }
}

pub struct Options {
    pub bind: SocketAddr,
    /// `None`: token auth, loopback only.
    pub auth: Option<Auth>,
}

/// What the CLI prints when the server is up.
pub struct Started {
    pub url: String,
    pub login: Option<String>,
    pub token_file: Option<PathBuf>,
}

pub(crate) struct App {
    ws: Workspace,
    auth: Auth,
    token: String,
    csrf: String,
    changes: tokio::sync::broadcast::Sender<()>,
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut b = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom for the serve token")?;
    Ok(hex::encode(b))
}

/// Serves until the process is stopped; calls `started` once listening.
pub fn serve(ws: Workspace, opts: Options, started: impl FnOnce(&Started)) -> anyhow::Result<()> {
    if !opts.bind.ip().is_loopback() && opts.auth.is_none() {
        bail!(
            "refusing to serve {} beyond this machine without --auth: pass `--auth token` (the token printed at start) or `--auth header:NAME` behind a reverse proxy that authenticates people",
            opts.bind
        );
    }
    let auth = opts.auth.unwrap_or(Auth::Token);
    let token = random_hex(32)?;
    let token_file = ws.dir.join("serve.token");
    if auth == Auth::Token {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&token_file)
            .with_context(|| format!("writing {}", token_file.display()))?;
        std::io::Write::write_all(&mut f, format!("{token}\n").as_bytes())?;
    }
    let (changes, _) = tokio::sync::broadcast::channel(16);
    let app = Arc::new(App {
        ws: ws.clone(),
        auth: auth.clone(),
        token: token.clone(),
        csrf: random_hex(16)?,
        changes: changes.clone(),
    });
    watch(&ws, changes)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.bind)
            .await
            .with_context(|| format!("binding {}", opts.bind))?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}/");
        started(&Started {
            login: (auth == Auth::Token).then(|| format!("{url}login?token={token}")),
            token_file: (auth == Auth::Token).then_some(token_file),
            url,
        });
        axum::serve(listener, router(app)).await?;
        anyhow::Ok(())
    })
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login))
        .route("/campaigns/{id}", get(campaign))
        .route("/campaigns/{id}/trials/{trial}", get(trial))
        .route("/campaigns/{id}/amend", post(amend))
        .route("/approvals", get(approvals))
        .route("/approvals/{id}", post(decide))
        .route("/insights", get(insights))
        .route("/audit", get(audit))
        .route("/events", get(events))
        .route("/static/live.js", get(live_js))
        .with_state(app)
}

/// Binds `.reagent/watch.sock` and forwards each poke as a change.
fn watch(ws: &Workspace, changes: tokio::sync::broadcast::Sender<()>) -> anyhow::Result<()> {
    let path = ws.dir.join(crate::workspace::WATCH_SOCKET);
    let _ = std::fs::remove_file(&path);
    let sock = std::os::unix::net::UnixDatagram::bind(&path)
        .with_context(|| format!("binding {}", path.display()))?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while sock.recv(&mut buf).is_ok() {
            let _ = changes.send(());
        }
    });
    Ok(())
}

/// The person a request speaks for, or the answer refusing it.
fn person(app: &App, headers: &HeaderMap) -> Result<Identity, Response> {
    let refuse = |why: &str| (StatusCode::UNAUTHORIZED, Html(pages::refused(why))).into_response();
    match &app.auth {
        Auth::Header(name) => {
            let who = headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.len() <= 100 && v.chars().all(|c| !c.is_control()));
            match who {
                Some(w) => Ok(Identity::User(w.to_string())),
                None => Err(refuse(&format!(
                    "no {name} header: this server trusts a reverse proxy to name the person"
                ))),
            }
        }
        Auth::Token => {
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            let cookie = headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|kv| kv.trim().strip_prefix("reagent_token="))
                .next();
            match bearer.or(cookie) {
                Some(t) if same(t.trim(), &app.token) => Ok(Identity::current()),
                Some(_) => Err(refuse(
                    "the token is not this server's (it changes at every start)",
                )),
                None => Err(refuse(
                    "this workspace needs its token: open the login link `reagent serve` printed, or send `Authorization: Bearer` with the token in .reagent/serve.token",
                )),
            }
        }
    }
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Runs blocking store work off the runtime's thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            Html(pages::failed(&format!("{e:#}"))),
        )
            .into_response()),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()),
    }
}

/// A page rendered off the runtime's thread, or the error page.
async fn render(f: impl FnOnce() -> anyhow::Result<String> + Send + 'static) -> Response {
    match blocking(f).await {
        Ok(b) => html(b),
        Err(r) => r,
    }
}

fn html(body: String) -> Response {
    let mut r = Html(body).into_response();
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'; img-src data:; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

macro_rules! authed {
    ($app:expr, $headers:expr) => {
        match person(&$app, &$headers) {
            Ok(p) => p,
            Err(r) => return r,
        }
    };
}

async fn index(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let who = authed!(app, headers);
    let ws = app.ws.clone();
    render(move || pages::index(&ws, &who.name())).await
}

#[derive(Deserialize)]
struct LoginQuery {
    token: String,
}

async fn login(State(app): State<Arc<App>>, Query(q): Query<LoginQuery>) -> Response {
    if app.auth != Auth::Token || !same(q.token.trim(), &app.token) {
        return (
            StatusCode::UNAUTHORIZED,
            Html(pages::refused("that is not this server's token")),
        )
            .into_response();
    }
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "reagent_token={}; HttpOnly; SameSite=Strict; Path=/",
        app.token
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize, Default)]
pub(crate) struct TrialQuery {
    pub sort: Option<String>,
    pub status: Option<String>,
}

async fn campaign(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Query(q): Query<TrialQuery>,
) -> Response {
    let _who = authed!(app, headers);
    let ws = app.ws.clone();
    let csrf = app.csrf.clone();
    match blocking(move || pages::campaign(&ws, id, &q, &csrf)).await {
        Ok(Some(b)) => html(b),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Html(pages::failed(&format!("no campaign {id}"))),
        )
            .into_response(),
        Err(r) => r,
    }
}

async fn trial(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((id, t)): Path<(u64, u64)>,
) -> Response {
    let _who = authed!(app, headers);
    let ws = app.ws.clone();
    match blocking(move || pages::trial(&ws, id, t)).await {
        Ok(Some(b)) => html(b),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Html(pages::failed(&format!("no trial {t} in campaign {id}"))),
        )
            .into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct Flash {
    pub said: Option<String>,
}

async fn approvals(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(f): Query<Flash>,
) -> Response {
    let _who = authed!(app, headers);
    let ws = app.ws.clone();
    let csrf = app.csrf.clone();
    render(move || pages::approvals(&ws, &csrf, f.said.as_deref())).await
}

#[derive(Deserialize)]
struct DecisionForm {
    csrf: String,
    decision: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    hash: String,
}

async fn decide(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Form(form): Form<DecisionForm>,
) -> Response {
    let who = authed!(app, headers);
    if !same(&form.csrf, &app.csrf) {
        return (
            StatusCode::FORBIDDEN,
            Html(pages::failed(
                "this form is not from this server (CSRF token); reload the page and decide again",
            )),
        )
            .into_response();
    }
    let approve = match form.decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "decision must be approve or reject",
            )
                .into_response();
        }
    };
    if !approve && form.note.trim().is_empty() {
        return Redirect::to("/approvals?said=a+rejection+needs+a+reason").into_response();
    }
    let ws = app.ws.clone();
    let hash = (!form.hash.is_empty()).then_some(form.hash);
    let said = blocking(move || pages::decide(&ws, id, approve, form.note, hash, &who)).await;
    let said = match said {
        Ok(s) => s,
        Err(r) => return r,
    };
    let _ = app.changes.send(());
    to_approvals(&said)
}

/// `/approvals?said=…` with `said` percent-encoded.
fn to_approvals(said: &str) -> Response {
    let mut to = String::from("/approvals?said=");
    for b in said.bytes() {
        if b.is_ascii_alphanumeric() {
            to.push(b as char);
        } else {
            to.push_str(&format!("%{b:02X}"));
        }
    }
    Redirect::to(&to).into_response()
}

async fn amend(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Form(form): Form<pages::AmendForm>,
) -> Response {
    let who = authed!(app, headers);
    if !same(&form.csrf, &app.csrf) {
        return (
            StatusCode::FORBIDDEN,
            Html(pages::failed(
                "this form is not from this server (CSRF token); reload the page and ask again",
            )),
        )
            .into_response();
    }
    let ws = app.ws.clone();
    match blocking(move || pages::amend(&ws, id, &form, &who)).await {
        Ok(said) => {
            let _ = app.changes.send(());
            to_approvals(&said)
        }
        Err(r) => r,
    }
}

async fn insights(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let _who = authed!(app, headers);
    let ws = app.ws.clone();
    render(move || pages::insights(&ws)).await
}

async fn audit(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let _who = authed!(app, headers);
    let ws = app.ws.clone();
    render(move || pages::audit(&ws)).await
}

async fn events(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let _who = authed!(app, headers);
    let rx = app.changes.subscribe();
    // A missed notice (lagged) is still a change; a closed channel ends.
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        use tokio::sync::broadcast::error::RecvError;
        match rx.recv().await {
            Ok(()) | Err(RecvError::Lagged(_)) => Some((
                Ok::<_, std::convert::Infallible>(Event::default().event("change").data("1")),
                rx,
            )),
            Err(RecvError::Closed) => None,
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

async fn live_js() -> Response {
    let mut r = (StatusCode::OK, pages::LIVE_JS).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    r
}
