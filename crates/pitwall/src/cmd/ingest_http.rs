//! The ingestion service's HTTP side: probes (/healthz, /readyz), Prometheus
//! (/metrics), and the status page (/, /status.json) with the score runs of
//! a directory (/runs.json, /runs/NAME/report.html).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use pitwall_ingest::metrics::{Metrics, READY_WITHIN};
use pitwall_ingest::status::{SAMPLE_EVERY, status};
use pitwall_lease::LeaseStore;

const PAGE: &str = include_str!("status.html");
/// The files of a score run the page links to.
const RUN_FILES: [&str; 2] = ["report.html", "run.json"];

pub struct Http {
    pub metrics: Arc<Metrics>,
    /// What /metrics encodes: build, process and the worker's series.
    pub registry: prometheus_client::registry::Registry,
    pub store: Arc<dyn LeaseStore>,
    pub stream: String,
    pub worker_id: String,
    /// `score run --out` directories to list (a run, or a directory of runs).
    pub score_runs: Option<PathBuf>,
}

/// Binds `addr` (an error names it) and serves in the background; also
/// takes the status page's rate samples.
pub async fn serve(addr: SocketAddr, http: Http) -> anyhow::Result<()> {
    let http = Arc::new(http);
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/", get(|| async { Html(PAGE) }))
        .route("/status.json", get(status_json))
        .route("/runs.json", get(runs_json))
        .route("/runs/{name}/{file}", get(run_file))
        .with_state(http.clone());
    super::http::serve(addr, app).await?;
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SAMPLE_EVERY);
        loop {
            every.tick().await;
            http.metrics.sample();
        }
    });
    Ok(())
}

async fn readyz(State(h): State<Arc<Http>>) -> (StatusCode, String) {
    super::http::probe(h.metrics.ready(READY_WITHIN))
}

async fn metrics(State(h): State<Arc<Http>>, headers: HeaderMap) -> impl IntoResponse {
    super::http::prometheus(&h.registry, &headers)
}

async fn status_json(State(h): State<Arc<Http>>) -> Response {
    let leases = h.store.list().await;
    json(&status(&h.metrics, leases, &h.stream, &h.worker_id))
}

fn json<T: serde::Serialize>(v: &T) -> Response {
    match serde_json::to_string(v) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(serde::Serialize)]
struct RunsView {
    enabled: bool,
    dir: String,
    runs: Vec<RunView>,
}

#[derive(serde::Serialize)]
struct RunView {
    name: String,
    run_id: Option<String>,
    as_of: Option<String>,
    status: Option<String>,
    held_because: Vec<String>,
    rentals_valid: Option<u64>,
    members_total: Option<u64>,
    report: Option<String>,
    run_json: String,
}

async fn runs_json(State(h): State<Arc<Http>>) -> Response {
    let Some(root) = h.score_runs.clone() else {
        return json(&RunsView {
            enabled: false,
            dir: String::new(),
            runs: Vec::new(),
        });
    };
    let dir = root.display().to_string();
    // Listing the directory and reading each run.json is blocking I/O.
    let runs = tokio::task::spawn_blocking(move || {
        list_runs(&root)
            .iter()
            .map(|(name, dir)| run_view(name, dir))
            .collect()
    })
    .await
    .unwrap_or_default();
    json(&RunsView {
        enabled: true,
        dir,
        runs,
    })
}

/// The run directories under `root`, by name: `root` itself when it is a
/// run, else its subdirectories that hold a run.json. Only these are served,
/// so no request can name a path outside them.
fn list_runs(root: &Path) -> Vec<(String, PathBuf)> {
    let name_of = |p: &Path| {
        p.file_name()
            .map_or_else(|| "run".to_string(), |n| n.to_string_lossy().into_owned())
    };
    if root.join("run.json").is_file() {
        return vec![(name_of(root), root.to_path_buf())];
    }
    let mut runs: Vec<(String, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("run.json").is_file())
        .map(|p| (name_of(&p), p))
        .collect();
    // Newest first, for the run names `score run` gives (dates sort).
    runs.sort_by(|a, b| b.0.cmp(&a.0));
    runs
}

fn run_view(name: &str, dir: &Path) -> RunView {
    let run: serde_json::Value = std::fs::read(dir.join("run.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    RunView {
        name: name.to_string(),
        run_id: text(&run["run_id"]),
        as_of: text(&run["as_of"]),
        status: text(&run["status"]),
        held_because: run["held_because"]
            .as_array()
            .map(|a| a.iter().filter_map(text).collect())
            .unwrap_or_default(),
        rentals_valid: run["rentals"]["valid"].as_u64(),
        members_total: run["members"]["total"].as_u64(),
        report: dir
            .join("report.html")
            .is_file()
            .then(|| format!("runs/{name}/report.html")),
        run_json: format!("runs/{name}/run.json"),
    }
}

async fn run_file(
    State(h): State<Arc<Http>>,
    UrlPath((name, file)): UrlPath<(String, String)>,
) -> Response {
    let not_found = |why: String| (StatusCode::NOT_FOUND, why + "\n").into_response();
    let Some(root) = h.score_runs.clone() else {
        return not_found("no --score-runs directory".into());
    };
    if !RUN_FILES.contains(&file.as_str()) {
        return not_found(format!("only {RUN_FILES:?} of a run are served"));
    }
    let found = tokio::task::spawn_blocking(move || {
        let (_, dir) = list_runs(&root).into_iter().find(|(n, _)| *n == name)?;
        std::fs::read(dir.join(&file)).ok().map(|b| (file, b))
    })
    .await
    .ok()
    .flatten();
    match found {
        Some((file, body)) => {
            let kind = if file.ends_with(".html") {
                "text/html; charset=utf-8"
            } else {
                "application/json"
            };
            ([(header::CONTENT_TYPE, kind)], body).into_response()
        }
        None => not_found("no such run or file".into()),
    }
}
