//! `stress.report_html` opened in a real browser: headless Chromium parses each page (its DOM, dumped,
//! has every chart with as many points as the run's records), and a screenshot of it is not blank.

use super::common::{load_database, scratch_file, value};
use postgres::Client;
use std::path::Path;
use std::process::Command;

/// The percentiles each result's distribution has (metrics::histogram::DISTRIBUTION_PERCENTILES).
const DISTRIBUTION_POINTS: usize = 8;

/// Run headless Chromium on `page` with `args`; its stdout.
fn chromium(page: &Path, args: &[&str]) -> String {
    let out = Command::new("chromium")
        // (--no-sandbox: the tests may run as root, where Chromium's sandbox refuses to start)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("running chromium (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The page of `run_id`, written to a file, as Chromium's DOM after loading it.
fn open_report(client: &mut Client, run_id: i64) -> (String, std::path::PathBuf) {
    let html: String = value(client, &format!("SELECT stress.report_html({run_id})"));
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..100]);
    // Self-contained: no script, nothing fetched (no URL at all).
    assert!(!html.contains("<script"), "a script in the page");
    assert!(
        !html.contains("http:") && !html.contains("https:") && !html.contains("src="),
        "the page refers to something outside itself"
    );
    let path = scratch_file(&format!("report_{run_id}.html"));
    std::fs::write(&path, &html).unwrap();
    let dom = chromium(&path, &["--dump-dom"]);
    assert!(
        dom.contains(&format!("pg_stress run {run_id}")),
        "Chromium did not render run {run_id}'s page"
    );
    (dom, path)
}

/// The series of chart `id` in the DOM: (name, number of points) per line or area, in order.
fn chart_series(dom: &str, id: &str) -> Vec<(String, usize)> {
    let start = dom
        .find(&format!("<svg id=\"{id}\""))
        .unwrap_or_else(|| panic!("no chart {id}"));
    let end = start + dom[start..].find("</svg>").unwrap();
    let svg = &dom[start..end];
    let attribute = |element: &str, name: &str| -> String {
        let from = element.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        element[from..from + element[from..].find('"').unwrap()].to_owned()
    };
    svg.split('<')
        .filter(|e| e.starts_with("polyline ") || e.starts_with("polygon "))
        .map(|e| {
            let points = attribute(e, "points");
            (
                attribute(e, "data-series"),
                points.split_whitespace().count(),
            )
        })
        .collect()
}

fn marks(dom: &str, kind: &str) -> usize {
    dom.matches(&format!("class=\"mark {kind}\"")).count()
}

/// A screenshot of the page: wide and tall, not one colour, with the charts' first colour in it.
fn assert_screenshot_shows_charts(page: &Path) {
    let png = page.with_extension("png");
    let _ = std::fs::remove_file(&png);
    chromium(
        page,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1000,2400",
        ],
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((frame.width, frame.height), (1000, 2400));
    let channels = frame.color_type.samples();
    let rgb: Vec<[u8; 3]> = pixels[..frame.buffer_size()]
        .chunks(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    let not_white = rgb.iter().filter(|p| **p != [255, 255, 255]).count();
    let share = not_white as f64 / rgb.len() as f64;
    assert!(
        share > 0.02,
        "only {:.1}% of the screenshot is drawn",
        share * 100.0
    );
    let distinct: std::collections::HashSet<[u8; 3]> = rgb.iter().copied().collect();
    assert!(distinct.len() > 50, "{} colours", distinct.len());
    // the first series colour (#1f77b4), as a line or dot is painted
    let blue = rgb
        .iter()
        .filter(|p| p[0].abs_diff(0x1f) < 8 && p[1].abs_diff(0x77) < 8 && p[2].abs_diff(0xb4) < 8)
        .count();
    assert!(blue > 100, "{blue} pixels of the first series colour");
}

#[test]
fn a_load_run_report_renders_in_chromium_with_every_point() {
    let mut client = load_database("it_report_html");
    // Opposite-order transfers on 2 accounts: deadlocks, and workers waiting for locks.
    let run_id: i64 = value(
        &mut client,
        "CALL stress.deadlock_test(workers => 2, duration => '4 seconds')",
    );
    let (dom, page) = open_report(&mut client, run_id);

    let samples: i64 = value(
        &mut client,
        &format!("SELECT count(*) FROM stress.samples WHERE run_id = {run_id}"),
    );
    assert!(samples >= 2, "{samples} samples");
    assert_eq!(
        chart_series(&dom, "throughput"),
        vec![("ops/s".to_owned(), samples as usize)]
    );
    let mut with = |column: &str| -> usize {
        value::<i64>(
            &mut client,
            &format!("SELECT count(*) FROM stress.samples WHERE run_id = {run_id} AND {column}"),
        ) as usize
    };
    let (p50, p99) = (with("p50_ms IS NOT NULL"), with("p99_ms IS NOT NULL"));
    assert_eq!(
        chart_series(&dom, "latency"),
        vec![("p50".to_owned(), p50), ("p99".to_owned(), p99)]
    );
    // A mark over each second with errors, and each with deadlocks — and this run had some.
    assert_eq!(marks(&dom, "error"), with("errors > 0"));
    assert_eq!(marks(&dom, "deadlock"), with("deadlocks > 0"));
    assert!(
        marks(&dom, "deadlock") > 0,
        "no deadlock in a deadlock test"
    );

    // One stacked layer per wait event the workers were seen in, each over every timeline row.
    let rows: i64 = value(
        &mut client,
        &format!("SELECT count(*) FROM stress.timeline WHERE run_id = {run_id}"),
    );
    let events: Vec<String> = client
        .query(
            "SELECT w.key FROM stress.timeline t, jsonb_each_text(t.wait_events) w
             WHERE t.run_id = $1 GROUP BY w.key HAVING sum(w.value::float8) > 0",
            &[&run_id],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        events.iter().any(|e| e.starts_with("Lock:")),
        "the workers never waited for a lock: {events:?}"
    );
    let layers = chart_series(&dom, "wait-events");
    assert_eq!(
        layers.len(),
        events.len().min(8) + usize::from(events.len() > 8)
    );
    for (name, points) in &layers {
        assert!(events.contains(name) || name.starts_with("other"), "{name}");
        assert_eq!(*points, 2 * rows as usize, "{name}");
    }

    // Each operation's distribution, and the total (dashed), at every kept percentile.
    let measured: Vec<String> = client
        .query(
            "SELECT name FROM stress.results WHERE run_id = $1 AND p50_ms IS NOT NULL
             ORDER BY name = 'total', id",
            &[&run_id],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let measured: Vec<(String, usize)> = measured
        .into_iter()
        .filter(|name| name != "total")
        .map(|name| (name, DISTRIBUTION_POINTS))
        .collect();
    let lines = chart_series(&dom, "percentiles");
    assert_eq!(&lines[..measured.len()], &measured[..]);
    assert!(lines.len() == measured.len() || lines.last().unwrap().0 == "total");

    // The run's contention: a row per deadlock pattern (with its count), lock waits on accounts.
    let patterns: Vec<i64> = client
        .query(
            "SELECT occurrences FROM stress.analyze_deadlocks($1)",
            &[&run_id],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!patterns.is_empty());
    let table = &dom[dom
        .find("<table id=\"deadlock-patterns\"")
        .expect("no deadlock patterns")..];
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(table.matches("<tr>").count(), 1 + patterns.len());
    for n in patterns {
        assert!(table.contains(&format!("<td>{n}</td>")), "{table}");
    }
    assert!(dom.contains("<table id=\"lock-contention\""));
    assert!(dom.contains(">stress_data.accounts</td>"));

    // The seed's targets, judged, and the run's parameters.
    for target in ["p99_latency_ms", "throughput", "deadlocks_per_1000"] {
        assert!(dom.contains(&format!(">{target}</td>")), "{target}");
    }
    assert!(dom.contains("deadlock_test") && dom.contains(">duration_seconds</td>"));

    // The server's WAL flushes, and pg_stat_io's buffer I/O on the versions that have it.
    let server = &dom[dom.find("<table id=\"server\"").expect("no server table")..];
    let server = &server[..server.find("</table>").unwrap()];
    let flushes: i64 = value(
        &mut client,
        &format!("SELECT sum(wal_syncs)::int8 FROM stress.timeline WHERE run_id = {run_id}"),
    );
    assert!(flushes > 0, "no WAL flush in {rows} seconds of transfers");
    assert!(server.contains(">WAL flushes to disk</td>"), "{server}");
    let version: i32 = value::<String>(&mut client, "SHOW server_version_num")
        .parse()
        .unwrap();
    if version >= 160000 {
        assert!(
            server.contains(">buffers read, every process (pg_stat_io)</td>"),
            "{server}"
        );
        assert!(server.contains(">of those, by backends and workers themselves</td>"));
    } else {
        assert!(server.contains(">PostgreSQL 16 and later</td>"), "{server}");
    }
    assert_screenshot_shows_charts(&page);
}

#[test]
fn a_ramp_and_a_benchmark_get_their_own_charts() {
    let mut client = load_database("it_report_html_series");
    let steps: Vec<i64> = super::common::series_steps(
        &mut client,
        "CALL stress.ramp('{1,2,3}', '1 second', max_throughput_drop => NULL)",
        "run_id",
    )
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(steps.len(), 3);
    // Any step's page charts the whole ramp: a point per step, at its worker count.
    let (dom, _) = open_report(&mut client, steps[1]);
    assert_eq!(
        chart_series(&dom, "series-throughput"),
        vec![("achieved ops/s".to_owned(), 3)]
    );
    assert_eq!(
        chart_series(&dom, "series-p99"),
        vec![("p99".to_owned(), 3)]
    );
    assert!(dom.contains("ramp step 2 of 3"));
    assert!(dom.contains(&format!("{} (this run)", steps[1])));

    let run_id: i64 = value(
        &mut client,
        "SELECT DISTINCT run_id FROM stress.benchmark(
             ARRAY['SELECT * FROM stress_data.accounts WHERE id = 7',
                   'SELECT count(*) FROM stress_data.orders WHERE account_id = 5'], 200)",
    );
    let (dom, page) = open_report(&mut client, run_id);
    assert_eq!(
        chart_series(&dom, "percentiles"),
        vec![
            (
                "SELECT * FROM stress_data.accounts WHERE id = 7".to_owned(),
                DISTRIBUTION_POINTS
            ),
            (
                "SELECT count(*) FROM stress_data.orders WHERE account_id = 5".to_owned(),
                DISTRIBUTION_POINTS
            ),
        ]
    );
    assert!(
        !dom.contains("<svg id=\"throughput\""),
        "a benchmark has no samples"
    );
    assert_screenshot_shows_charts(&page);

    // No run, or NULL: 22023, as for stress.report.
    for id in ["NULL", "-1"] {
        let e = client
            .batch_execute(&format!("SELECT stress.report_html({id})"))
            .unwrap_err();
        assert_eq!(
            e.code(),
            Some(&postgres::error::SqlState::INVALID_PARAMETER_VALUE),
            "{e}"
        );
    }
}
