//! Hostile students: a fork bomb, a memory bomb and an output flood in one
//! instance leave the server healthy, its memory flat, and others served.

mod common;

use std::time::Duration;

use common::*;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A second, well-behaved session still answers commands.
async fn bystander_answers(term: &mut Term) {
    let out = term.run("echo bystander-$((20+3))").await;
    assert!(out.contains("bystander-23"), "{out}");
}

#[test]
fn an_output_flood_to_a_client_that_does_not_read_keeps_memory_flat() {
    let server = TestServer::start();
    let flood = server.instance(&server.demo_spec("flood"));
    let calm = server.instance(&server.demo_spec("calm"));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut bystander = Term::connect(&server.ws_url(&calm)).await;
        bystander_answers(&mut bystander).await;
        let mut flooder = Term::connect(&server.ws_url(&flood)).await;
        flooder.wait_for("$").await;
        let before = rss_kib(server.pid());
        flooder.type_line("yes flood-flood-flood-flood").await;
        // The flooding client stops reading; the server must not buffer for it.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            bystander_answers(&mut bystander).await;
        }
        let after = rss_kib(server.pid());
        assert!(
            after < before + 8 * 1024,
            "server RSS grew from {before} KiB to {after} KiB during the flood"
        );
        // A new connection takes the flooding terminal over at once (the stalled
        // client's pending output does not hold it up) and can interrupt it.
        let mut rescuer = Term::connect(&server.ws_url(&flood)).await;
        rescuer.send_keys("\u{3}").await;
        rescuer.run("echo flood-stopped").await;
        drop(flooder);
    });
    assert_eq!(server.http("GET", "/health", "").status, 200);
}

#[test]
fn a_fork_bomb_and_a_memory_bomb_stay_inside_their_container() {
    let server = TestServer::start_with(&["--pids-limit", "64", "--memory-mb", "64"]);
    let bomb = server.instance(&server.demo_spec("bomb"));
    let calm = server.instance(&server.demo_spec("calm-bomb"));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut bystander = Term::connect(&server.ws_url(&calm)).await;
        bystander_answers(&mut bystander).await;
        let mut bomber = Term::connect(&server.ws_url(&bomb)).await;
        bomber.wait_for("$").await;
        // The pids limit stops the fork bomb.
        bomber.type_line("bomb() { bomb | bomb & }; bomb").await;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            bystander_answers(&mut bystander).await;
        }
        assert_eq!(server.http("GET", "/health", "").status, 200);
        let pids: u64 = docker(&[
            "inspect",
            "-f",
            "{{.HostConfig.PidsLimit}}",
            &format!("ua-{bomb}"),
        ])
        .parse()
        .unwrap();
        assert_eq!(pids, 64);
    });
    // Clean the bombed instance (its shell may be beyond saving), then the memory bomb.
    assert_eq!(
        server
            .http("POST", "/spec/clean?async=false", &server.demo_spec("bomb"))
            .status,
        200
    );
    let hog = server.instance(&server.demo_spec("hog"));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut bystander = Term::connect(&server.ws_url(&calm)).await;
        let mut hog_term = Term::connect(&server.ws_url(&hog)).await;
        hog_term.wait_for("$").await;
        // Holds 200 MB in one shell variable: the 64 MiB limit's OOM killer ends it.
        hog_term
            .type_line("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo \"sur\"\"vived\"")
            .await;
        let (ended, _) = hog_term.until_closed(Duration::from_secs(60)).await;
        assert!(
            matches!(ended, Ended::Closed(1000) | Ended::Closed(1011)),
            "{ended:?}"
        );
        assert!(
            !hog_term.screen.contains("survived\r\n"),
            "{}",
            hog_term.screen
        );
        bystander_answers(&mut bystander).await;
    });
    assert_eq!(server.http("GET", "/health", "").status, 200);
}

#[test]
fn a_large_paste_does_not_block_output_or_others() {
    let server = TestServer::start();
    let paster = server.instance(&server.demo_spec("paste"));
    let calm = server.instance(&server.demo_spec("calm-paste"));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut bystander = Term::connect(&server.ws_url(&calm)).await;
        let mut term = Term::connect(&server.ws_url(&paster)).await;
        term.wait_for("$").await;
        // cat into a file reads the 1 MiB paste, in 1 KiB lines (a canonical TTY cuts lines at 4 KiB).
        term.type_line("stty -echo; cat > pasted.txt").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let line = format!("{}\r", "p".repeat(1023));
        // 1 MiB in two frames: one frame of it would pass the 1 MiB frame limit.
        for _ in 0..2 {
            term.send_keys(&line.repeat(512)).await;
        }
        bystander_answers(&mut bystander).await;
        term.send_keys("\u{4}").await;
        let out = term.run("stty echo; wc -c < pasted.txt").await;
        assert!(out.contains(&format!("{}", 1024 * 1024)), "{out}");
    });
}

#[test]
fn containers_are_hardened_and_assignment_json_is_capped() {
    let server = TestServer::start_with(&["--max-memory-mb", "256"]);
    let dir = server.assignments().join("limited");
    write(
        &dir.join("Dockerfile.tmpl"),
        "FROM ua-busybox:latest\nUSER student\n",
    );
    write(
        &dir.join("assignment.json"),
        r#"{"memoryMB": 100000, "pidsLimit": 50, "cpus": 0.5}"#,
    );
    let id = server.instance(&server.seal(r#"{"specID":"limited","assignmentName":"limited"}"#));
    let inspect = |format: &str| docker(&["inspect", "-f", format, &format!("ua-{id}")]);
    assert_eq!(
        inspect("{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}"),
        format!("{0} {0}", 256 << 20)
    );
    assert_eq!(inspect("{{.HostConfig.PidsLimit}}"), "50");
    assert_eq!(inspect("{{.HostConfig.NanoCpus}}"), "500000000");
    assert_eq!(inspect("{{.HostConfig.NetworkMode}}"), "none");
    assert_eq!(inspect("{{.HostConfig.CapDrop}}"), "[ALL]");
    assert_eq!(
        inspect("{{.HostConfig.SecurityOpt}}"),
        "[no-new-privileges]"
    );
    assert_eq!(inspect("{{.HostConfig.Init}}"), "true");
}

#[test]
fn a_build_past_its_time_limit_is_stopped_with_422() {
    let server = TestServer::start_with(&["--build-timeout", "30s"]);
    let dir = server.assignments().join("endless");
    write(
        &dir.join("Dockerfile.tmpl"),
        "FROM ua-busybox:latest\nRUN sleep 60\n",
    );
    write(&dir.join("assignment.json"), r#"{"buildTimeout": "2s"}"#);
    let response = server.http(
        "POST",
        "/spec",
        &server.seal(r#"{"specID":"endless","assignmentName":"endless"}"#),
    );
    assert_eq!(response.status, 422, "{}", response.body);
    assert!(
        response.body.contains("longer than 2s"),
        "{}",
        response.body
    );
    assert!(
        server.records().is_empty() && server.containers().is_empty() && server.images().is_empty(),
        "{:?} {:?} {:?}\n{}",
        server.records(),
        server.containers(),
        server.images(),
        server.log()
    );
    // A broken assignment.json is reported, not ignored.
    write(&dir.join("assignment.json"), r#"{"buildTimeout": "soon"}"#);
    let response = server.http(
        "POST",
        "/spec",
        &server.seal(r#"{"specID":"endless2","assignmentName":"endless"}"#),
    );
    assert_eq!(response.status, 422, "{}", response.body);
    assert!(
        response.body.contains("assignment.json"),
        "{}",
        response.body
    );
}

// A slow client cannot pin a connection: tests/in_process.rs (paused clock).
