//! Etsy StatsD's rules for a line, from its own test suite: every case of `is_valid_packet` in statsd/statsd's
//! `test/helpers_tests.js` (in `etsy/is_valid_packet.txt`, line → valid or bad) is parsed by crew's parser, which
//! must agree case by case, and the bad lines crew counts in the whole table must be the ones Etsy refuses.
//! `crates/cli/tests/it/metrics.rs` sends the same table to a running `crew serve` and reads its count.

use crew_metrics::statsd::Parser;

/// The table: (valid?, line).
fn cases() -> Vec<(bool, &'static str)> {
    include_str!("etsy/is_valid_packet.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| match l.split_once('\t') {
            Some(("valid", line)) => (true, line),
            Some(("bad", line)) => (false, line),
            _ => panic!("a table line is `valid` or `bad`, a tab, the line: {l:?}"),
        })
        .collect()
}

#[test]
fn crew_refuses_the_lines_etsy_statsd_refuses() {
    let cases = cases();
    assert!(cases.len() >= 40, "the whole table is read: {}", cases.len());
    let mut p = Parser::new();
    let mut wrong = vec![];
    for (valid, line) in &cases {
        let got = p.parse(line.as_bytes(), |_, _, _, _| {});
        if got.is_ok() != *valid {
            wrong.push(format!("{line:?}: Etsy says {}, crew says {got:?}", if *valid { "valid" } else { "bad" }));
        }
    }
    assert!(wrong.is_empty(), "crew disagrees with Etsy's StatsD:\n{}", wrong.join("\n"));
}

#[test]
fn crew_counts_as_many_bad_lines_as_etsy_statsd() {
    // The table as one datagram, counted the way the receive path counts (one per refused line).
    let cases = cases();
    let datagram: String = cases.iter().map(|(_, l)| format!("{l}\n")).collect();
    let mut p = Parser::new();
    let (mut lines, mut bad, mut values) = (0, 0, 0);
    for line in datagram.as_bytes().split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        lines += 1;
        match p.parse(line, |_, _, _, _| values += 1) {
            Ok(_) => {}
            Err(_) => bad += 1,
        }
    }
    let etsy_bad = cases.iter().filter(|(valid, _)| !valid).count();
    assert_eq!(lines, cases.len());
    assert_eq!(bad, etsy_bad, "bad lines counted");
    assert_eq!(values, cases.len() - etsy_bad, "every valid line gives its one value");
}
