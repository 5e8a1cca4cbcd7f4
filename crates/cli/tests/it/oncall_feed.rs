//! The iCal feed against an independent oracle: the feed crew serves, read by Python's `icalendar` and
//! `recurring-ical-events` (crates/cli/tests/oracle/oncall_at.py), names the same person as crew's own
//! `GET /api/v1/oncall?at=` and `crew oncall SCHEDULE --at T --json` at 1,000 seeded random instants and at
//! both sides of every handoff, for a schedule of several layers with restrictions and overrides in a zone
//! whose clocks change inside the window, and for a person's feed spanning two zones.

use crate::harness::{Server, CREW};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const PYTHON: &str = "/usr/bin/python3";
/// The window: from before the US's spring-forward (8 March) past Europe's (29 March), Europe's fall-back
/// (25 October) and the US's (1 November).
const FROM: &str = "2026-03-02T00:00:00Z";
const TO: &str = "2026-11-09T00:00:00Z";

/// Six people; "ops" in Berlin: a weekly day rotation restricted to working hours (and a short weekend day),
/// under a 12-hour rotation restricted to nights with handoffs at 02:30 (a time that is skipped on 29 March and
/// happens twice on 25 October); "db" in New York: a weekly rotation handing off on Sundays at 01:30 (a time
/// that happens twice on 1 November), its weeks long enough that an override cuts one days before an instant.
fn config(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for p in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        text += &format!("[people.{p}]\nemail = \"{p}@example.com\"\nnotify = [\"email\"]\n");
    }
    text += r#"
[[schedules]]
name = "ops"
zone = "Europe/Berlin"
[[schedules.layers]]
name = "weekly"
users = ["alice", "bob", "carol"]
rotation = "weekly"
start = "2026-02-23T09:00"
restrict = [{ days = "mon-fri", from = "08:00", to = "20:00" }, { days = "sat,sun", from = "10:00", to = "16:00" }]
[[schedules.layers]]
name = "nights"
users = ["dave", "erin", "alice"]
rotation = "12h"
start = "2026-02-20T02:30"
restrict = [{ days = "daily", from = "19:00", to = "09:30" }]

[[schedules]]
name = "db"
zone = "America/New_York"
[[schedules.layers]]
name = "weeks"
users = ["alice", "frank"]
rotation = "weekly"
start = "2026-02-01T01:30"
"#;
    let path = dir.join("crew.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// What the oracle said at an instant: who (`user@schedule,...` or `-`) and the bounds of their events
/// (`START/END,...` or `-`).
struct Said {
    at: String,
    who: String,
    bounds: String,
}

/// Runs the oracle on a feed; returns what it printed, instant by instant.
fn oracle(feed: &str, dir: &Path, name: &str) -> Vec<Said> {
    let have = std::process::Command::new(PYTHON).args(["-c", "import icalendar, recurring_ical_events"]).output();
    assert!(
        have.as_ref().is_ok_and(|o| o.status.success()),
        "{PYTHON} needs icalendar and recurring_ical_events (Debian's python3-icalendar and \
         python3-recurring-ical-events; scripts/test installs them): {have:?}"
    );
    let path = dir.join(format!("{name}.ics"));
    std::fs::write(&path, feed).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/oncall_at.py");
    let out = std::process::Command::new(PYTHON)
        .arg(&script)
        .arg(&path)
        .args([FROM, TO, "--count", "1000", "--seed", "20261201", "--edges"])
        .output()
        .unwrap();
    assert!(out.status.success(), "the oracle on the {name} feed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| match l.split('\t').collect::<Vec<_>>()[..] {
            [at, who, bounds] => Said { at: at.into(), who: who.into(), bounds: bounds.into() },
            _ => panic!("oracle line {l:?}"),
        })
        .collect()
}

async fn feed(s: &Server, rotate: &str, query: &str) -> reqwest::Response {
    let path = s.req(Method::POST, rotate, &s.admin).send().await.unwrap().json::<Value>().await.unwrap()["feed"]
        .as_str()
        .unwrap()
        .to_string();
    reqwest::get(format!("{}{path}{query}", s.url)).await.unwrap()
}

/// A time of crew's API rounded up to the second, as the feed writes it: `2026-07-01T10:00:31Z`.
fn second(v: &Value) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().with_timezone(&chrono::Utc);
    let whole = chrono::DateTime::from_timestamp(t.timestamp(), 0).unwrap();
    let up = if whole < t { whole + chrono::Duration::seconds(1) } else { whole };
    up.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// What crew says of an instant in the oracle's terms: everyone on call (`user@schedule`, in each schedule or
/// for `person` only) and the bounds of their shifts.
fn crew_says(v: &Value, person: Option<&str>, schedule: Option<&str>) -> (String, String) {
    let mut now: Vec<(String, String)> = v["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| schedule.is_none_or(|s| w["schedule"] == s))
        .filter_map(|w| {
            let u = w["now"]["user"].as_str()?;
            let who = format!("{u}@{}", w["schedule"].as_str().unwrap());
            let bounds = format!("{}/{}", second(&w["now"]["from"]), second(&w["now"]["until"]));
            person.is_none_or(|p| p == u).then_some((who, bounds))
        })
        .collect();
    now.sort();
    let join = |f: fn(&(String, String)) -> &str| {
        let v: Vec<&str> = now.iter().map(f).collect();
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    (join(|n| &n.0), join(|n| &n.1))
}

#[tokio::test]
async fn the_ical_feed_read_by_icalendar_names_who_crew_says_is_on_call() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(&config(dir.path())).await;
    // Overrides: one from before the window into it, one across Berlin's spring-forward, two ending and starting
    // in the hour that 25 October has twice (in its first and in its second pass), two touching, and one with
    // fractions of a second (the feed rounds up to the second).
    let overrides = [
        ("dave", "2026-02-25T00:00:00Z", "2026-03-03T12:00:00Z"),
        ("carol", "2026-03-28T12:00:00Z", "2026-03-30T06:00:00Z"),
        ("frank", "2026-10-24T22:00:00Z", "2026-10-25T00:15:00Z"),
        ("bob", "2026-10-25T01:10:00Z", "2026-10-25T01:40:00Z"),
        ("bob", "2026-06-10T08:00:00Z", "2026-06-10T10:00:00Z"),
        ("alice", "2026-06-10T10:00:00Z", "2026-06-10T12:00:00Z"),
        ("erin", "2026-07-01T10:00:30.500Z", "2026-07-01T10:07:45.250Z"),
    ];
    // And one in the middle of one of alice's weeks on "db": the rest of her week starts when it ends.
    let db = [("erin", "2026-06-22T14:00:00Z", "2026-06-22T16:00:00Z")];
    for (schedule, (user, from, until)) in overrides.iter().map(|o| ("ops", o)).chain(db.iter().map(|o| ("db", o))) {
        let body = json!({"user": user, "from": from, "until": until});
        let path = format!("/api/v1/oncall/{schedule}/overrides");
        let res = s.req(Method::POST, &path, &s.admin).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 201, "{body}: {}", res.text().await.unwrap());
    }

    let window = format!("&from={FROM}&to={TO}");
    let ops = feed(&s, "/api/v1/oncall/ops/feed", &window).await;
    assert_eq!(ops.status(), 200);
    let ops = ops.text().await.unwrap();
    let alice = feed(&s, "/api/v1/people/alice/feed", &window).await.text().await.unwrap();
    // Local times on the schedule's clock, its zone's VTIMEZONE, and UTC where the local time is ambiguous.
    assert!(ops.contains("TZID:Europe/Berlin\r\n") && ops.contains("DTSTART;TZID=Europe/Berlin:"), "{ops}");
    assert!(ops.contains("DTEND:20261025T001500Z") && ops.contains("DTSTART:20261025T011000Z"), "{ops}");
    assert!(alice.contains("TZID:Europe/Berlin\r\n") && alice.contains("TZID:America/New_York\r\n"));
    assert!(alice.contains(":20261101T053000Z\r\n"), "01:30 on 1 November in New York, the first time: {alice}");
    // Every event has its own UID (a person's shifts in two schedules may start together).
    for text in [&ops, &alice] {
        let uids: Vec<&str> = text.lines().filter(|l| l.starts_with("UID:")).collect();
        let unique: std::collections::BTreeSet<&&str> = uids.iter().collect();
        assert_eq!(unique.len(), uids.len(), "UIDs repeat");
    }
    // The window is bounded and its parameters checked; the default window still works.
    for bad in [
        "&from=2026-01-01T00:00:00Z&to=2027-03-01T00:00:00Z",
        "&from=2026-05-01T00:00:00Z&to=2026-04-01T00:00:00Z",
        "&at=x",
    ] {
        assert_eq!(feed(&s, "/api/v1/oncall/ops/feed", bad).await.status(), 400, "{bad}");
    }
    // Fetched again a moment later, the default window has moved but its events have not: the first and last
    // reach to their real ends, so no UID changes with the time of the fetch.
    let uids = |text: String| -> Vec<String> {
        text.lines().filter(|l| l.starts_with("UID:") || l.starts_with("DT")).map(str::to_string).collect()
    };
    let first = feed(&s, "/api/v1/oncall/ops/feed", "").await.text().await.unwrap();
    assert!(first.starts_with("BEGIN:VCALENDAR"));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = feed(&s, "/api/v1/oncall/ops/feed", "").await.text().await.unwrap();
    let (first, second) = (uids(first), uids(second));
    assert_eq!(
        first.iter().filter(|l| !l.starts_with("DTSTAMP")).collect::<Vec<_>>(),
        second.iter().filter(|l| !l.starts_with("DTSTAMP")).collect::<Vec<_>>()
    );

    let ops_said = oracle(&ops, dir.path(), "ops");
    let alice_said = oracle(&alice, dir.path(), "alice");
    assert!(ops_said.len() > 2000 && alice_said.len() > 1000, "{} and {} instants", ops_said.len(), alice_said.len());

    // Every instant either feed was asked about, asked of crew's API once.
    let mut crew: BTreeMap<String, Value> = BTreeMap::new();
    for said in ops_said.iter().chain(&alice_said) {
        if !crew.contains_key(&said.at) {
            let v = s.get_json(&format!("/api/v1/oncall?at={}", said.at), &s.admin).await;
            crew.insert(said.at.clone(), v);
        }
    }
    // Who, and the bounds of their shift: the feed's event is crew's segment.
    let mut wrong = Vec::new();
    for (name, saids, person, schedule) in
        [("ops", &ops_said, None, Some("ops")), ("alice", &alice_said, Some("alice"), None)]
    {
        for said in saids {
            let (who, bounds) = crew_says(&crew[&said.at], person, schedule);
            if (&who, &bounds) != (&said.who, &said.bounds) {
                wrong.push(format!(
                    "{name}'s feed at {}: the feed says {} ({}), crew {who} ({bounds})",
                    said.at, said.who, said.bounds
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {} instants disagree:\n{}", wrong.len(), crew.len(), wrong.join("\n"));

    // What was compared covers the cases: every person, gaps, overrides, both sides of each clock change.
    let people: std::collections::BTreeSet<&str> = ops_said.iter().map(|s| s.who.as_str()).collect();
    for p in ["alice@ops", "bob@ops", "carol@ops", "dave@ops", "erin@ops", "frank@ops", "-"] {
        assert!(people.contains(p), "nobody was {p}: {people:?}");
    }
    assert!(alice_said.iter().any(|s| s.who == "alice@db,alice@ops"), "alice on call twice at once");
    let after_erin = |s: &&Said| s.at.as_str() > "2026-06-24" && s.at.as_str() < "2026-06-28";
    assert!(alice_said.iter().filter(after_erin).any(|s| s.bounds.contains("2026-06-22T16:00:00Z/")), "after erin");
    for day in ["2026-03-08", "2026-03-29", "2026-10-25", "2026-11-01"] {
        assert!(ops_said.iter().chain(&alice_said).filter(|s| s.at.starts_with(day)).count() >= 4, "{day}");
    }

    // A sample through the command line too.
    let step = ops_said.len() / 20;
    for said in ops_said.iter().step_by(step).take(20) {
        let t = &said.at;
        let out = std::process::Command::new(CREW)
            .env("CREW_SERVER", &s.url)
            .env("CREW_TOKEN", &s.admin)
            .env_remove("CREW_DATA_DIR")
            .args(["oncall", "ops", "--at", t, "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["schedules"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(crew_says(&v, None, None), (said.who.clone(), said.bounds.clone()), "crew oncall ops --at {t}");
    }
}
