//! Shared-image assignments against a real server and Docker: one image per
//! assignment version, per-instance files and setup without a build, image
//! garbage collection, and the `--pull` policy against a loopback registry.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    write(path, text);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `lab/shared`: an image with a user, per-instance files in and out of the
/// home, and a setup that leaves proof of when and as whom it ran.
fn write_lab(dir: &Path) {
    write(
        &dir.join("Dockerfile"),
        "FROM ua-busybox:latest\n\
         RUN echo base > /opt-base.txt\n\
         USER student\n\
         WORKDIR /home/student\n\
         ENV LAB=shared\n\
         CMD [\"/bin/sh\", \"-c\", \"echo lab-$LAB-ready; cat /etc/setup-proof; exec /bin/sh\"]\n",
    );
    write_mode(
        &dir.join("instance/home/student/notes.txt.tmpl"),
        "secret={{ data.secret }} spec={{ spec_id }}\n",
        0o640,
    );
    write_mode(
        &dir.join("instance/home/student/bin/run.sh"),
        "#!/bin/sh\necho running\n",
        0o750,
    );
    chmod(&dir.join("instance/home/student/bin"), 0o710);
    write_mode(
        &dir.join("instance/etc/lab-note.txt.tmpl"),
        "{{ instance_id }}\n",
        0o604,
    );
    write(
        &dir.join("setup.sh.tmpl"),
        "set -e\n\
         echo \"setup-as-$(id -u) saw $(cat /home/student/notes.txt | cut -c1-7)\" > /etc/setup-proof\n\
         echo {{ data.secret | shell }} > /root/secret-copy\n\
         chmod 600 /root/secret-copy\n",
    );
}

fn lab_spec(server: &TestServer, spec_id: &str, secret: &str) -> String {
    server.seal(&format!(
        r#"{{"specID":"{spec_id}","assignmentName":"lab.shared","data":{{"secret":"{secret}"}}}}"#
    ))
}

#[test]
fn instances_share_one_image_and_get_their_own_files_and_setup() {
    let server = TestServer::start();
    write_lab(&server.assignments().join("lab/shared"));
    let first = server.instance(&lab_spec(&server, "one", "alpha-1111"));
    let second = server.instance(&lab_spec(&server, "two", "bravo-2222"));
    assert_ne!(first, second);

    // One assignment image, no image per instance.
    let images = server.images();
    assert_eq!(
        images,
        vec!["ua-assignment/lab.shared".to_string()],
        "{images:?}"
    );
    let kind = docker(&[
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"ua.kind\"}} {{index .Config.Labels \"ua.assignment\"}}",
        &docker(&["images", "-q", "ua-assignment/lab.shared"]),
    ]);
    assert_eq!(kind, "assignment lab.shared");
    let records = server.records();
    assert_eq!(records.len(), 2);
    assert!(
        records.iter().all(|r| r["sharedImage"] == true),
        "{records:?}"
    );

    runtime().block_on(async {
        for (id, secret) in [(&first, "alpha-1111"), (&second, "bravo-2222")] {
            let mut term = Term::connect(&server.ws_url(id)).await;
            // The image's CMD runs, after the setup ran as root and saw the files.
            term.wait_for_from(0, "lab-shared-ready\r\nsetup-as-0 saw secret=", Duration::from_secs(20))
                .await;
            let out = term.run("id -un; pwd; echo $LAB; cat notes.txt").await;
            assert!(out.contains("student\r\n/home/student\r\nshared\r\n"), "{out}");
            let spec = if id == &first { "one" } else { "two" };
            assert!(out.contains(&format!("secret={secret} spec={spec}")), "{out}");
            let out = term
                .run("stat -c '%n %U:%G %a' notes.txt bin bin/run.sh /etc/lab-note.txt /home/student /etc")
                .await;
            for expected in [
                "notes.txt student:student 640",
                "bin student:student 710",
                "bin/run.sh student:student 750",
                "/etc/lab-note.txt root:root 604",
                // Directories the image has keep their owner and mode.
                "/home/student student:student 755",
                "/etc root:root 755",
            ] {
                assert!(out.contains(expected), "{expected:?} in {out}");
            }
            let out = term.run("cat /etc/lab-note.txt; bin/run.sh; cat /opt-base.txt").await;
            assert!(out.contains(&format!("{id}\r\nrunning\r\nbase")), "{out}");
            // The setup's own copy of the secret is root's; the script left no file.
            let out = term.run("cat /root/secret-copy; ls /run /tmp").await;
            assert!(out.contains("Permission denied") && !out.contains(secret), "{out}");
            term.close().await;
        }
    });
    assert!(!server.log().contains("alpha-1111"), "spec data in the log");
    for phase in ["render", "create", "copy", "start", "setup", "attach"] {
        assert!(
            server.log().contains(&format!(": {phase} took ")),
            "no debug line for {phase}"
        );
    }
}

#[test]
fn a_container_left_running_by_its_setup_stops_when_no_terminal_comes() {
    let server = TestServer::start_with(&["--reattach-grace", "1s", "--instance-expiry", "1h"]);
    let dir = server.assignments().join("lab/warm");
    write(&dir.join("Dockerfile"), "FROM ua-busybox:latest\n");
    write(&dir.join("setup.sh.tmpl"), "true\n");
    let id = server.instance(&server.seal(r#"{"specID":"w","assignmentName":"lab.warm"}"#));
    assert_eq!(server.containers(), vec![format!("ua-{id} running")]);
    eventually(Duration::from_secs(30), "the container is stopped", || {
        server.containers() == vec![format!("ua-{id} exited")]
    });
    // A later terminal starts it again, setup not repeated, files kept.
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        let out = term.run("echo alive").await;
        assert!(out.contains("\r\nalive\r\n"), "{out}");
        term.close().await;
    });
    assert_eq!(server.log().matches(": setup took ").count(), 1);
}

#[test]
fn a_failing_setup_is_a_422_with_sealed_output_and_leaves_nothing() {
    let server = TestServer::start();
    let dir = server.assignments().join("lab/failing");
    write(
        &dir.join("Dockerfile"),
        "FROM ua-busybox:latest\nUSER student\n",
    );
    write(&dir.join("instance/home/student/a.txt"), "a\n");
    write(
        &dir.join("setup.sh.tmpl"),
        "echo \"checking {{ data.secret }}\"\necho broken >&2\nexit 3\n",
    );
    let sealed = server
        .seal(r#"{"specID":"f","assignmentName":"lab.failing","data":{"secret":"zulu-9999"}}"#);
    let response = server.http("POST", "/spec", &sealed);
    assert_eq!(response.status, 422, "{}", response.body);
    let body = response.json();
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("exit status 3"), "{error}");
    let opened = ua_with_input(
        "open",
        &server.key_file(),
        body["sealedOutput"].as_str().unwrap(),
    );
    assert_eq!(
        String::from_utf8_lossy(&opened.stdout),
        "checking zulu-9999\nbroken\n"
    );
    assert!(!response.body.contains("zulu-9999"));
    assert!(server.containers().is_empty(), "{:?}", server.containers());
    assert!(server.records().is_empty());
    assert_eq!(
        server.images(),
        vec!["ua-assignment/lab.failing".to_string()]
    );
    assert!(!server.log().contains("zulu-9999"), "spec data in the log");
    let metrics = server.http("GET", "/metrics", "").body;
    assert!(
        metrics.contains("ua_errors_total{kind=\"setup\"} 1"),
        "{metrics}"
    );
}

#[test]
fn an_edit_makes_a_new_image_and_the_old_one_goes_when_unused() {
    let mut server = TestServer::start();
    let dir = server.assignments().join("lab/versions");
    write(
        &dir.join("Dockerfile"),
        "FROM ua-busybox:latest\nRUN echo v1 > /version\n",
    );
    let spec = |server: &TestServer, id: &str| {
        server.seal(&format!(
            r#"{{"specID":"{id}","assignmentName":"lab.versions"}}"#
        ))
    };
    let old = server.instance(&spec(&server, "old"));
    let tags = || {
        let mut tags: Vec<String> = docker(&[
            "images",
            "--filter",
            "label=ua.assignment=lab.versions",
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ])
        .lines()
        .map(str::to_string)
        .collect();
        tags.sort();
        tags
    };
    let v1 = tags();
    assert_eq!(v1.len(), 1, "{v1:?}");

    write(
        &dir.join("Dockerfile"),
        "FROM ua-busybox:latest\nRUN echo v2 > /version\n",
    );
    let new = server.instance(&spec(&server, "new"));
    let both = tags();
    assert_eq!(both.len(), 2, "{both:?}");
    let v2: Vec<String> = both.iter().filter(|t| !v1.contains(t)).cloned().collect();
    let image_of = |id: &str| {
        server
            .records()
            .into_iter()
            .find(|r| r["instanceID"] == id)
            .unwrap()["image"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(image_of(&old), v1[0]);
    assert_eq!(image_of(&new), v2[0]);
    runtime().block_on(async {
        for (id, version) in [(&old, "v1"), (&new, "v2")] {
            let mut term = Term::connect(&server.ws_url(id)).await;
            let out = term.run("cat /version").await;
            assert!(out.contains(&format!("\r\n{version}\r\n")), "{out}");
            term.close().await;
        }
    });

    // A restart keeps the old image while an instance uses it.
    server.kill();
    server.spawn();
    assert_eq!(tags(), both);

    // Unused and not current: the sweep removes it; the current one stays.
    let cleaned = server.http("POST", "/spec/clean?async=false", &spec(&server, "old"));
    assert_eq!(cleaned.json()["cleaned"], 1, "{}", cleaned.body);
    eventually(
        Duration::from_secs(40),
        "the old image is collected",
        || tags() == v2,
    );
    let cleaned = server.http("POST", "/spec/clean?async=false", &spec(&server, "new"));
    assert_eq!(cleaned.json()["cleaned"], 1, "{}", cleaned.body);
    // Current, though unused: kept through a restart (reconcile runs before listening).
    server.kill();
    server.spawn();
    assert_eq!(tags(), v2);
    // An assignment that is gone has no current version: reconcile removes its image.
    std::fs::remove_dir_all(&dir).unwrap();
    server.kill();
    server.spawn();
    assert_eq!(tags(), Vec::<String>::new());
}

#[test]
fn concurrent_first_uses_build_the_assignment_image_once() {
    let server = TestServer::start_with(&["--max-builds", "2"]);
    write(
        &server.assignments().join("lab/rush/Dockerfile"),
        "FROM ua-busybox:latest\nRUN sleep 1 && echo built > /built\n",
    );
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..5)
            .map(|i| {
                let server = &server;
                s.spawn(move || {
                    server.instance(&server.seal(&format!(
                        r#"{{"specID":"rush-{i}","assignmentName":"lab.rush"}}"#
                    )))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 5);
    assert_eq!(server.images(), vec!["ua-assignment/lab.rush".to_string()]);
    assert_eq!(
        server.log().matches("building assignment image").count(),
        1,
        "{}",
        server.log()
    );
    let metrics = server.http("GET", "/metrics", "").body;
    for phase in ["build", "create"] {
        let count = format!("ua_phase_duration_seconds_count{{phase=\"{phase}\"}}");
        let line = metrics.lines().find(|l| l.starts_with(&count)).unwrap();
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(n, if phase == "build" { 1 } else { 5 }, "{line}");
    }
}

#[test]
fn both_dockerfiles_make_an_invalid_assignment() {
    let server = TestServer::start();
    let dir = server.assignments().join("lab/both");
    write(&dir.join("Dockerfile"), "FROM ua-busybox:latest\n");
    write(&dir.join("Dockerfile.tmpl"), "FROM ua-busybox:latest\n");
    let response = server.http(
        "POST",
        "/spec",
        &server.seal(r#"{"specID":"b","assignmentName":"lab.both","data":{"x":"secret-value"}}"#),
    );
    assert_eq!(response.status, 422, "{}", response.body);
    let error = response.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("both a Dockerfile and a Dockerfile.tmpl") && !error.contains("secret"),
        "{error}"
    );
}

fn pull_assignment(server: &TestServer, base: &str) {
    write(
        &server.assignments().join("lab/pulled/Dockerfile"),
        &format!("FROM {base}\nUSER student\nWORKDIR /home/student\n"),
    );
}

fn pull_spec(server: &TestServer, id: &str) -> String {
    server.seal(&format!(
        r#"{{"specID":"{id}","assignmentName":"lab.pulled"}}"#
    ))
}

#[test]
fn pull_never_names_the_missing_base_image() {
    let registry = LocalRegistry::start();
    let base = registry.reference("ua-test/base:v1");
    registry.push_built(&base, "FROM ua-busybox:latest\n");
    let server = TestServer::start();
    pull_assignment(&server, &base);
    let response = server.http("POST", "/spec", &pull_spec(&server, "n"));
    assert_eq!(response.status, 422, "{}", response.body);
    let error = response.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains(&base) && error.contains("--pull missing"),
        "{error}"
    );
    assert!(!image_present(&base), "never pulls");
    // The same for a per-instance assignment.
    write(
        &server.assignments().join("lab/templated/Dockerfile.tmpl"),
        &format!("FROM {base}\n"),
    );
    let response = server.http(
        "POST",
        "/spec",
        &server.seal(r#"{"specID":"t","assignmentName":"lab.templated"}"#),
    );
    assert_eq!(response.status, 422, "{}", response.body);
    assert!(response.body.contains(&base), "{}", response.body);
}

#[test]
fn pull_missing_fetches_the_base_once_and_fails_fast_on_a_dead_registry() {
    let registry = LocalRegistry::start();
    let base = registry.reference("ua-test/base:v1");
    registry.push_built(
        &base,
        "FROM ua-busybox:latest\nRUN echo from-registry > /origin\n",
    );
    let server = TestServer::start_with(&["--pull", "missing"]);
    pull_assignment(&server, &base);
    let id = server.instance(&pull_spec(&server, "m1"));
    assert!(image_present(&base));
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        let out = term.run("cat /origin").await;
        assert!(out.contains("\r\nfrom-registry\r\n"), "{out}");
        term.close().await;
    });

    // A registry that is not there: a 503 naming the image, not a hang.
    let dead = {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("127.0.0.1:{port}/ua-test/none:v1")
    };
    write(
        &server.assignments().join("lab/dead/Dockerfile"),
        &format!("FROM {dead}\n"),
    );
    let response = server.http(
        "POST",
        "/spec",
        &server.seal(r#"{"specID":"d","assignmentName":"lab.dead"}"#),
    );
    assert_eq!(response.status, 503, "{}", response.body);
    assert!(response.header("Retry-After").is_some());
    let error = response.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains(&dead), "{error}");
}

#[test]
fn pull_always_gets_the_registrys_newer_base() {
    let registry = LocalRegistry::start();
    let base = registry.reference("ua-test/base:v1");
    // The host has an old image under the tag; the registry a newer one.
    registry.push_built(&base, "FROM ua-busybox:latest\nRUN echo newer > /origin\n");
    docker(&["tag", "ua-busybox:latest", &base]);
    let server = TestServer::start_with(&["--pull", "always"]);
    pull_assignment(&server, &base);
    let id = server.instance(&pull_spec(&server, "a1"));
    runtime().block_on(async {
        let mut term = Term::connect(&server.ws_url(&id)).await;
        let out = term.run("cat /origin").await;
        assert!(out.contains("\r\nnewer\r\n"), "{out}");
        term.close().await;
    });
}
