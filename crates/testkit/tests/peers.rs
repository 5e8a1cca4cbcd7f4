//! Self-tests of the peers crew-testkit starts: Alertmanager delivers to a webhook with the bearer, firing
//! then resolved; a Prometheus rule reaches that webhook through Alertmanager; the SMTP sink keeps what a real
//! client (lettre) sends and refuses connections while stopped; a peer that cannot start names its log.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use axum::{Json, Router};
use crew_testkit::{Alertmanager, Prometheus, SmtpSink};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One webhook call: its Authorization header, its query string and its JSON body.
#[derive(Clone, Debug)]
struct Call {
    auth: Option<String>,
    query: Option<String>,
    body: Value,
}

type Calls = Arc<Mutex<Vec<Call>>>;

/// A webhook receiver on a free port that records every call; returns its URL (with a query string) and
/// the calls.
async fn webhook() -> (String, Calls) {
    let calls: Calls = Default::default();
    let app = Router::new()
        .route(
            "/hook",
            post(|State(calls): State<Calls>, uri: Uri, headers: HeaderMap, Json(body): Json<Value>| async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(String::from);
                calls.lock().unwrap().push(Call { auth, query: uri.query().map(String::from), body });
                StatusCode::OK
            }),
        )
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://127.0.0.1:{port}/hook?escalation=www"), calls)
}

/// The first call whose body has this status and an alert named `name`, within `timeout`.
async fn notification(calls: &Calls, name: &str, status: &str, timeout: Duration) -> Call {
    let deadline = Instant::now() + timeout;
    loop {
        let found = calls
            .lock()
            .unwrap()
            .iter()
            .find(|c| c.body["status"] == status && c.body["alerts"][0]["labels"]["alertname"] == name)
            .cloned();
        if let Some(c) = found {
            return c;
        }
        if Instant::now() > deadline {
            panic!("no {status} notification for {name} in {timeout:?}; got {:#?}", calls.lock().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn alertmanager_delivers_firing_then_resolved_with_the_bearer() {
    let (url, calls) = webhook().await;
    let am = Alertmanager::start(&url, "s3cret-token").unwrap();
    assert!(am.url().starts_with("http://127.0.0.1:"));
    let labels = [("severity", "page"), ("service", "www")];
    am.add_alert("HighErrors", &labels, &[("summary", "errors high")]).await.unwrap();
    let firing = notification(&calls, "HighErrors", "firing", Duration::from_secs(10)).await;
    assert_eq!(firing.auth.as_deref(), Some("Bearer s3cret-token"));
    assert_eq!(firing.query.as_deref(), Some("escalation=www"));
    assert_eq!(firing.body["receiver"], "crew");
    let alert = &firing.body["alerts"][0];
    assert_eq!(alert["labels"]["severity"], "page", "{alert}");
    assert_eq!(alert["labels"]["service"], "www", "{alert}");
    assert_eq!(alert["annotations"]["summary"], "errors high", "{alert}");

    am.resolve_alert("HighErrors", &labels, &[("summary", "errors high")]).await.unwrap();
    let resolved = notification(&calls, "HighErrors", "resolved", Duration::from_secs(10)).await;
    assert_eq!(resolved.auth.as_deref(), Some("Bearer s3cret-token"));
    let alert = &resolved.body["alerts"][0];
    assert_eq!(alert["status"], "resolved", "{alert}");
    assert_eq!(alert["labels"]["service"], "www", "{alert}");
    assert_eq!(alert["fingerprint"], firing.body["alerts"][0]["fingerprint"], "the same alert");
}

#[tokio::test]
async fn a_prometheus_rule_reaches_the_webhook_through_alertmanager() {
    let (url, calls) = webhook().await;
    let am = Alertmanager::start(&url, "chain-token").unwrap();
    let rules = "groups:\n  - name: crew\n    rules:\n      - alert: AlwaysFiring\n        expr: vector(1)\n        \
                 labels:\n          severity: ticket\n        annotations:\n          summary: the rule fires\n";
    let prom = Prometheus::start_with(&am.prometheus_alerting(), &[rules]).unwrap();
    assert!(prom.url().starts_with("http://127.0.0.1:"));
    let got = notification(&calls, "AlwaysFiring", "firing", Duration::from_secs(30)).await;
    assert_eq!(got.auth.as_deref(), Some("Bearer chain-token"));
    let alert = &got.body["alerts"][0];
    assert_eq!(alert["labels"]["severity"], "ticket", "{alert}");
    assert_eq!(alert["annotations"]["summary"], "the rule fires", "{alert}");
}

/// The io::Error at the bottom of an error's chain, if any.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = err.source();
    }
    None
}

#[tokio::test]
async fn the_smtp_sink_keeps_what_lettre_sends_and_refuses_while_stopped() {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let mut sink = SmtpSink::start().unwrap();
    assert_eq!(sink.addr(), format!("127.0.0.1:{}", sink.port));
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(sink.port)
        .timeout(Some(Duration::from_secs(5)))
        .build();
    let mail = |subject: &str| {
        Message::builder()
            .from("crew <crew@example.test>".parse().unwrap())
            .to("oncall@example.test".parse().unwrap())
            .subject(subject)
            .body("www to production failed at step 3".to_string())
            .unwrap()
    };
    mailer.send(mail("Deploy failed")).await.unwrap();
    let m = sink.wait_for(|m| m.contains("Subject: Deploy failed"), Duration::from_secs(10)).await;
    assert!(m.contains("To: oncall@example.test"), "{m}");
    assert!(m.contains("www to production failed at step 3"), "{m}");
    assert!(m.contains("X-RcptTo: oncall@example.test"), "the envelope recipient: {m}");
    assert_eq!(sink.messages().len(), 1);

    sink.stop();
    let err = mailer.send(mail("Lost")).await.expect_err("nothing listens while stopped");
    assert_eq!(io_kind(&err), Some(std::io::ErrorKind::ConnectionRefused), "{err:?}");

    sink.restart().unwrap();
    mailer.send(mail("Back")).await.unwrap();
    sink.wait_for(|m| m.contains("Subject: Back"), Duration::from_secs(10)).await;
    assert_eq!(sink.messages().len(), 2, "the Maildir outlives a restart");
}

#[test]
fn a_peer_that_cannot_start_names_its_log_and_quotes_it() {
    let err = match Alertmanager::start("ftp://127.0.0.1/not-http", "t") {
        Ok(_) => panic!("Alertmanager took a webhook URL that is not HTTP"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("exited"), "{err}");
    let log = err.split_whitespace().find(|w| w.ends_with("alertmanager.log:")).expect("the log file named");
    let log = std::path::Path::new(log.trim_end_matches(':'));
    assert!(log.exists(), "{} is kept for reading", log.display());
    assert!(err.contains("scheme"), "the log's complaint quoted: {err}");
    std::fs::remove_dir_all(log.parent().unwrap()).unwrap();
}
