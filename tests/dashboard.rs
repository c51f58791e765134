//! The monitoring examples (issue 25, item 4) against Debian's `prometheus`
//! and `promtool`: packaging/examples/prometheus.yml scrapes a real ua with a
//! class of instances (one terminal attached, a program killed for memory,
//! forks refused, a 503), every panel query of grafana-ua.json returns data
//! through Prometheus' HTTP API, and ua-alerts.yml passes promtool, its
//! alerts fire in `promtool test rules`, and the OOM, fork and 503 alerts
//! fire in that Prometheus.

mod common;
#[path = "common/prometheus.rs"]
mod prometheus;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use prometheus::Prometheus;
use serde_json::Value;

/// What the test puts for Grafana's variables in a panel's query.
const VARIABLES: [(&str, &str); 2] = [("$__rate_interval", "5m"), ("$instance", ".*")];

fn examples() -> PathBuf {
    repo().join("packaging/examples")
}

/// Runs `promtool ARGS`, failing loudly when Debian's prometheus is missing.
fn promtool(args: &[&str]) -> Output {
    Command::new("promtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("this test needs promtool (apt-get install prometheus): {e}"))
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The shipped prometheus.yml for a ua on `ua_port` with the shipped rules;
/// only the target's port, the rule file's path and the intervals change.
fn scrape_config(ua_port: u16) -> String {
    let path = examples().join("prometheus.yml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    let rules = examples().join("ua-alerts.yml");
    for (from, to) in [
        ("127.0.0.1:8000", format!("127.0.0.1:{ua_port}")),
        ("/etc/prometheus/ua-alerts.yml", rules.display().to_string()),
        ("scrape_interval: 15s", "scrape_interval: 1s".into()),
        ("evaluation_interval: 15s", "evaluation_interval: 1s".into()),
    ] {
        assert!(text.contains(from), "{} lost {from:?}", path.display());
        text = text.replace(from, &to);
    }
    text
}

/// Every query of the dashboard's panels (rows' panels included), as
/// (panel title, query with [`VARIABLES`] put in).
fn panel_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(examples().join("grafana-ua.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("grafana-ua.json is JSON");
    let mut queries = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    let mut panels: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "two panels {}",
            panel["id"]
        );
        for target in panel["targets"].as_array().into_iter().flatten() {
            let mut expr = target["expr"].as_str().unwrap().to_string();
            for (variable, value) in VARIABLES {
                expr = expr.replace(variable, value);
            }
            assert!(!expr.contains('$'), "an unknown variable in {expr}");
            queries.push((panel["title"].as_str().unwrap().to_string(), expr));
        }
    }
    assert!(queries.len() >= 20, "{queries:?}");
    queries
}

/// The dashboard's `label_values(METRIC, LABEL)` variables.
fn label_variables() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(examples().join("grafana-ua.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let list = dashboard["templating"]["list"].as_array().unwrap();
    list.iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let query = v["query"]["query"].as_str().unwrap();
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("not label_values(METRIC, LABEL): {query}"));
            let (metric, label) = inner.split_once(',').unwrap();
            (metric.trim().to_string(), label.trim().to_string())
        })
        .collect()
}

#[test]
fn the_shipped_rules_and_config_pass_promtool_and_every_alert_fires() {
    let rules = examples().join("ua-alerts.yml");
    assert_success(
        "promtool check rules",
        &promtool(&["check", "rules", rules.to_str().unwrap()]),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, scrape_config(8000)).unwrap();
    assert_success(
        "promtool check config",
        &promtool(&["check", "config", config.to_str().unwrap()]),
    );
    // The unit tests compare labels; promtool would compare annotations too
    // (their templates are checked above), so they test a copy without.
    let bare = dir.path().join("ua-alerts-bare.yml");
    std::fs::write(&bare, without_annotations(&rules)).unwrap();
    let tests = dir.path().join("ua-alerts-test.yml");
    std::fs::write(&tests, rule_tests(&bare)).unwrap();
    assert_success(
        "promtool test rules",
        &promtool(&["test", "rules", tests.to_str().unwrap()]),
    );
}

/// The rules file without its (one-line) annotations.
fn without_annotations(rules: &Path) -> String {
    let text = std::fs::read_to_string(rules).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            let key = line.trim_start();
            !["annotations:", "summary:", "description:"]
                .iter()
                .any(|k| key.starts_with(k))
        })
        .collect();
    kept.join("\n")
}

/// `n` samples of each `(value, n)` in turn, in promtool's notation.
fn samples(runs: &[(&str, usize)]) -> String {
    let all: Vec<&str> = runs
        .iter()
        .flat_map(|&(value, n)| std::iter::repeat_n(value, n))
        .collect();
    all.join(" ")
}

/// The input series of [`rule_tests`], one sample a minute: quiet until
/// 12m, then Docker errors, a full queue, 503s, a first OOM kill in
/// `a.first`, a later one in `a.old`, forks refused, ua gone, a panic.
fn trouble_series() -> Vec<(&'static str, String)> {
    vec![
        ("up", samples(&[("1", 15), ("0", 7)])),
        (
            "ua_errors_total{kind=\"docker\"}",
            samples(&[("0", 13), ("2", 9)]),
        ),
        (
            "ua_errors_total{kind=\"capacity\"}",
            samples(&[("0", 14), ("3", 8)]),
        ),
        ("ua_errors_total{kind=\"bad_request\"}", "0+1x21".into()),
        ("ua_builds_queued", samples(&[("0", 13), ("250", 9)])),
        (
            "ua_oom_kills_total{assignment=\"a.first\"}",
            samples(&[("_", 13), ("1", 9)]),
        ),
        (
            "ua_oom_kills_total{assignment=\"a.old\"}",
            samples(&[("1", 16), ("2", 6)]),
        ),
        (
            "ua_oom_kills_total{assignment=\"a.quiet\"}",
            samples(&[("1", 22)]),
        ),
        (
            "ua_pids_limit_hits_total{assignment=\"a.first\"}",
            samples(&[("_", 13), ("4", 9)]),
        ),
        ("ua_panics_total", samples(&[("0", 17), ("1", 5)])),
    ]
}

/// The alerts expected at a time: (alert, eval time, each alert's labels
/// besides severity and instance).
const EXPECTED: [(&str, &str, &[&str]); 8] = [
    ("UaDown", "17m", &["job=ua"]),
    ("UaDockerDown", "14m", &["job=ua,kind=docker"]),
    ("UaBuildQueueFull", "15m", &["job=ua"]),
    ("Ua503s", "15m", &["kind=capacity", "kind=docker"]),
    (
        "UaOomKills",
        "16m",
        &["job=ua,assignment=a.first", "job=ua,assignment=a.old"],
    ),
    ("UaPidsLimitHits", "14m", &["job=ua,assignment=a.first"]),
    ("UaPanics", "17m", &["job=ua"]),
    // The quiet server of the first 11 minutes fires nothing (below).
    ("", "11m", &[]),
];

/// A `promtool test rules` file for [`trouble_series`]: each alert fires
/// when it should, with its labels, and none fires on the quiet server.
fn rule_tests(rules: &Path) -> String {
    let mut text = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n",
        rules.display()
    );
    for (series, values) in trouble_series() {
        let labels = series.find('{').map_or("}", |i| &series[i + 1..]);
        let name = series.split('{').next().unwrap();
        let sep = if labels == "}" { "" } else { ", " };
        text.push_str(&format!(
            "      - series: '{name}{{job=\"ua\", instance=\"u:1\"{sep}{labels}'\n        values: '{values}'\n"
        ));
    }
    text.push_str("    alert_rule_test:\n");
    let severities = yaml_alert_severities();
    for (alert, at, expected) in EXPECTED {
        let names: Vec<&str> = if alert.is_empty() {
            severities.iter().map(|(name, _)| name.as_str()).collect()
        } else {
            vec![alert]
        };
        for name in names {
            text.push_str(&format!(
                "      - alertname: {name}\n        eval_time: {at}\n        exp_alerts:\n"
            ));
            let severity = &severities.iter().find(|(n, _)| n == name).unwrap().1;
            for labels in expected {
                text.push_str(&format!(
                    "          - exp_labels:\n              severity: {severity}\n              instance: u:1\n"
                ));
                for pair in labels.split(',') {
                    let (k, v) = pair.split_once('=').unwrap();
                    text.push_str(&format!("              {k}: {v}\n"));
                }
            }
            if expected.is_empty() {
                text.truncate(text.len() - 1);
                text.push_str(" []\n");
            }
        }
    }
    text
}

/// Each alert of ua-alerts.yml with its severity, read from the file.
fn yaml_alert_severities() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(examples().join("ua-alerts.yml")).unwrap();
    let mut alerts: Vec<(String, String)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert: ") {
            alerts.push((name.to_string(), String::new()));
        } else if let Some(severity) = line.strip_prefix("severity: ") {
            alerts.last_mut().unwrap().1 = severity.to_string();
        }
    }
    assert_eq!(
        alerts.len(),
        EXPECTED.len() - 1,
        "every alert is tested: {alerts:?}"
    );
    alerts
}

/// A shared-image assignment (a warm pool of one) and a class of three
/// students of it; a fourth is refused with a 503 (--max-instances 3).
fn class(server: &TestServer) -> Vec<String> {
    write(
        &server.assignments().join("class/lab/Dockerfile"),
        "FROM ua-busybox:latest\nUSER student\nWORKDIR /home/student\n",
    );
    let spec = |n: usize| {
        server.seal(&format!(
            r#"{{"specID":"student-{n}","assignmentName":"class.lab"}}"#
        ))
    };
    let ids: Vec<String> = (1..=3).map(|n| server.instance(&spec(n))).collect();
    let refused = server.http("POST", "/spec", &spec(4));
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(server.http("POST", "/spec", "garbage!").status, 400);
    ids
}

/// One student's program is killed for memory, another forks past the
/// process limit, in the attached terminal; waits until ua counts both.
async fn trouble(server: &TestServer, term: &mut Term) {
    let out = term
        .run("sh -c 'x=a; while :; do x=$x$x; done'; echo \"status $?\"")
        .await;
    assert!(out.contains("status 137"), "{out}");
    let out = term
        .run("sh -c 'for i in $(seq 40); do sleep 2 & done; wait' 2>&1 | tail -1; echo forked")
        .await;
    assert!(out.contains("forked"), "{out}");
    eventually(Duration::from_secs(30), "ua counts both", || {
        let page = server.http("GET", "/metrics", "").body;
        page.contains("ua_oom_kills_total{assignment=\"class.lab\"} ")
            && page.contains("ua_pids_limit_hits_total{assignment=\"class.lab\"} ")
    });
}

/// Every panel query returns a number; some say what the class did.
fn every_panel_has_data(prometheus: &Prometheus) {
    for (title, expr) in panel_queries() {
        let result = prometheus.query(&expr);
        assert!(
            result.iter().any(|(_, value)| value.is_finite()),
            "panel {title:?}: {expr} returned no data: {result:?}"
        );
    }
    let value = |expr: &str| prometheus.query(expr)[0].1;
    let instances = |state: &str| value(&format!(r#"sum(ua_instances{{state="{state}"}})"#));
    assert_eq!((instances("running"), instances("stopped")), (1.0, 2.0));
    assert!(value(r#"sum(rate(ua_errors_total{kind="capacity"}[5m]))"#) > 0.0);
    assert!(value("sum(ua_oom_kills_total)") >= 1.0);
    assert!(value("sum(ua_pids_limit_hits_total)") >= 1.0);
}

/// The alerts of the class's trouble fire; the others stay quiet.
fn the_trouble_fires_its_alerts(prometheus: &Prometheus) {
    eventually(
        Duration::from_secs(30),
        "the trouble's alerts are active",
        || {
            let active = prometheus.active_alerts();
            ["UaOomKills", "UaPidsLimitHits", "Ua503s"]
                .iter()
                .all(|a| active.iter().any(|b| b == a))
        },
    );
    let active = prometheus.active_alerts();
    for quiet in ["UaDown", "UaDockerDown", "UaBuildQueueFull", "UaPanics"] {
        assert!(
            !active.iter().any(|a| a == quiet),
            "{quiet} is active: {active:?}"
        );
    }
}

/// Waits until Prometheus has scraped what `expr` asks for.
fn scraped(prometheus: &Prometheus, what: &str, expr: &str) {
    eventually(Duration::from_secs(30), what, || {
        !prometheus.query(expr).is_empty()
    });
}

#[test]
fn every_panel_query_returns_data_from_prometheus_scraping_a_class() {
    let server = TestServer::start_with(&[
        "--warm",
        "1",
        "--memory-mb",
        "32",
        "--pids-limit",
        "24",
        "--max-instances",
        "3",
    ]);
    let prometheus = Prometheus::start(&scrape_config(server.port));
    scraped(&prometheus, "ua is scraped", r#"up{job="ua"} == 1"#);
    let ids = class(&server);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut term = rt.block_on(Term::connect(&server.ws_url(&ids[0])));
    rt.block_on(async {
        term.run("echo attached").await;
        trouble(&server, &mut term).await;
    });
    for (what, expr) in [
        ("the OOM kill", "ua_oom_kills_total > 0"),
        ("the refused forks", "ua_pids_limit_hits_total > 0"),
        ("the 503", r#"ua_errors_total{kind="capacity"} > 0"#),
        ("the terminal", "ua_sessions == 1"),
        ("the warm pool", "ua_pool_containers"),
    ] {
        scraped(&prometheus, what, expr);
    }
    every_panel_has_data(&prometheus);
    // The dashboard's variables find the server.
    for (metric, label) in label_variables() {
        let values = prometheus.api(
            "GET",
            &format!("/api/v1/label/{label}/values"),
            &[("match[]", &metric)],
        );
        let expected = format!("127.0.0.1:{}", server.port);
        assert_eq!(
            values,
            serde_json::json!([expected]),
            "label_values({metric}, {label})"
        );
    }

    the_trouble_fires_its_alerts(&prometheus);
    rt.block_on(term.close());
}
