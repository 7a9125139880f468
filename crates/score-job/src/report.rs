//! report.html: one self-contained page (no network, inline SVG) a data
//! scientist reviews before a run's scores are published.

use std::fmt::Write as _;
use std::path::Path;

use pitwall_score::member::pooled_rates;
use pitwall_score::{Assessment, Model, Rental};

use crate::members::MemberStats;
use crate::rejects::RuleReport;
use crate::run_json::{RunJson, RunStatus};
use crate::scoring::Scored;
use crate::{JobError, names};

pub fn write(
    out: &Path,
    run: &RunJson,
    rentals: &[Rental],
    scored: &Scored,
    members: &MemberStats,
    model: &Model,
) -> Result<(), JobError> {
    let html = render(run, rentals, scored, members, model);
    let path = out.join(names::REPORT);
    pitwall_lake::write_bytes(&path, html.as_bytes())?;
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}\
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}\
th{background:#f4f4f4}.ok{color:#176f2c;font-weight:bold}.held{color:#b00020;font-weight:bold}\
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1.5rem}.muted{color:#666}";

pub fn render(
    run: &RunJson,
    rentals: &[Rental],
    scored: &Scored,
    members: &MemberStats,
    model: &Model,
) -> String {
    let mut h = String::new();
    let status = match run.status {
        RunStatus::Ok => "<span class=ok>OK</span>",
        RunStatus::Held => "<span class=held>HELD</span>",
    };
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>pitwall score run {id}</title><style>{STYLE}</style></head><body>\
         <h1>Driving score run {status}</h1><p class=muted>run <code>{id}</code> · as_of {as_of} · model <code>{model}</code> ({source}) · grace {grace}</p>",
        id = esc(&run.run_id),
        as_of = esc(&run.as_of),
        model = esc(&run.model.id),
        source = esc(&run.model.source),
        grace = esc(&run.model.grace),
    );
    for reason in &run.held_because {
        let _ = write!(h, "<p class=held>Held: {}</p>", esc(reason));
    }
    for w in &run.warnings {
        let _ = write!(h, "<p class=muted>Warning: {}</p>", esc(w));
    }
    gates(&mut h, run);
    counts(&mut h, run);

    let assessed: Vec<(&Rental, &Assessment)> = rentals
        .iter()
        .zip(&scored.assessments)
        .filter_map(|(r, a)| a.as_ref().map(|a| (r, a)))
        .collect();
    let rental_scores: Vec<f64> = assessed.iter().filter_map(|(_, a)| a.score).collect();
    let member_scores = &members.scores;
    h.push_str("<h2>Scores</h2><div class=grid>");
    let _ = write!(
        h,
        "<div><h3>Rental scores ({} scored)</h3>{}</div>",
        rental_scores.len(),
        histogram(&rental_scores, "#3b6ea5")
    );
    let _ = write!(
        h,
        "<div><h3>Member scores ({} scored)</h3>{}</div>",
        member_scores.len(),
        histogram(member_scores, "#6a4c93")
    );
    h.push_str("</div><h2>Grades</h2><div class=grid>");
    let grade_names: Vec<String> = model.grades.iter().map(|g| g.grade.clone()).collect();
    let count_grades = |grades: Vec<&str>| -> Vec<f64> {
        grade_names
            .iter()
            .map(|g| grades.iter().filter(|x| **x == g.as_str()).count() as f64)
            .collect()
    };
    let rg = count_grades(
        assessed
            .iter()
            .filter_map(|(_, a)| a.grade.as_deref())
            .collect(),
    );
    let mg: Vec<f64> = grade_names
        .iter()
        .map(|g| members.grades.get(g).copied().unwrap_or(0) as f64)
        .collect();
    let _ = write!(
        h,
        "<div><h3>Rentals</h3>{}</div>",
        bars(&grade_names, &rg, "#3b6ea5", 0)
    );
    let _ = write!(
        h,
        "<div><h3>Members</h3>{}</div>",
        bars(&grade_names, &mg, "#6a4c93", 0)
    );
    h.push_str("</div>");
    factors(&mut h, &assessed);
    tail(&mut h, run);
    claims_review(&mut h, run);
    rejections(&mut h, "Rejected rental rows", &run.rejected.rentals);
    rejections(&mut h, "Rejected telemetry rows", &run.rejected.telemetry);
    if run.rejected.rows_not_kept > 0 {
        let _ = write!(
            h,
            "<p class=muted>{} rejected rows were counted but not kept (bound per file).</p>",
            run.rejected.rows_not_kept
        );
    }
    h.push_str("<h2>Outputs</h2><table>");
    for (k, v) in &run.outputs {
        let _ = write!(
            h,
            "<tr><th>{}</th><td><code>{}</code></td></tr>",
            esc(k),
            esc(v)
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

/// `--claims`: lift over deciles of predicted risk and the member view of
/// the model in use, the monthly review's figures.
fn claims_review(h: &mut String, run: &RunJson) {
    if let Some(e) = &run.claims_review_error {
        let _ = write!(h, "<h2>Claims review</h2><p class=held>{}</p>", esc(e));
    }
    let Some(r) = &run.claims_review else { return };
    let opt = |v: Option<f64>, d: usize| v.map_or("–".to_string(), |v| format!("{v:.d$}"));
    let mv = &r.member_view;
    let _ = write!(
        h,
        "<h2>Claims review</h2><p class=muted>model <code>{}</code> on {} scored rentals of <code>{}</code>          ({} – {}): {:.0} km, {} at-fault claims</p>         <p>Worst decile over best: <b>{}</b> ({} inversions) · Gini {:.3} [{:.3}, {:.3}] ·          members ≥ 90 against ≤ 50: claim frequency ratio <b>{}</b> [{}, {}] ({} vs {} members,          {:.3} vs {:.3} claims per 1,000 km)</p>",
        esc(&r.model),
        r.rentals,
        esc(&r.results),
        esc(&r.from),
        esc(&r.to),
        r.distance_km,
        r.claims,
        opt(r.lift.worst_over_best, 2),
        r.lift.inversions,
        r.gini.normalised,
        r.gini.ci_low,
        r.gini.ci_high,
        opt(mv.rate_ratio, 3),
        opt(mv.ci_low, 3),
        opt(mv.ci_high, 3),
        mv.high_members,
        mv.low_members,
        mv.high_per_1000_km,
        mv.low_per_1000_km,
    );
    let names: Vec<String> = r
        .lift
        .deciles
        .iter()
        .map(|d| d.decile.to_string())
        .collect();
    let freq: Vec<f64> = r.lift.deciles.iter().map(|d| d.per_1000_km).collect();
    let _ = write!(
        h,
        "<div><h3>Claims per 1,000 km by decile of predicted risk (equal exposure)</h3>{}</div>",
        bars(&names, &freq, "#b5651d", 3)
    );
}

fn gates(h: &mut String, run: &RunJson) {
    h.push_str("<h2>Quality gates</h2><table><tr><th>gate</th><th>result</th><th>observed</th><th>threshold</th><th>detail</th></tr>");
    for g in &run.gates {
        let result = match (g.evaluated, g.passed) {
            (false, _) => "<span class=muted>not evaluated</span>",
            (true, true) => "<span class=ok>pass</span>",
            (true, false) => "<span class=held>FAIL</span>",
        };
        let observed = g.observed.map_or("–".into(), |v| format!("{v:.4}"));
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{result}</td><td>{observed}</td><td>{}</td><td>{}</td></tr>",
            g.gate,
            g.threshold,
            esc(&g.detail)
        );
    }
    h.push_str("</table>");
}

fn counts(h: &mut String, run: &RunJson) {
    let i = &run.inputs;
    let _ = write!(
        h,
        "<h2>Inputs and outcomes</h2><table><tr><th></th><th>files</th><th>rows</th><th>valid</th><th>rejected</th></tr>\
         <tr><th>rentals</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\
         <tr><th>telemetry</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>\
         <p>Telemetry inside considered rentals: {} rows; outside every rental: {}; duplicate samples removed: {}.</p>",
        i.rentals.files,
        i.rentals.rows,
        i.rentals.valid,
        i.rentals.rejected,
        i.telemetry.files,
        i.telemetry.rows,
        i.telemetry.valid,
        i.telemetry.rejected,
        i.telemetry_in_rentals,
        i.telemetry_outside_rentals,
        i.telemetry_duplicates,
    );
    h.push_str("<div class=grid><div><h3>Rentals by status</h3><table>");
    let _ = write!(
        h,
        "<tr><th>considered</th><td>{}</td></tr><tr><th>not yet ended</th><td>{}</td></tr>",
        run.rentals.considered, run.rentals.not_yet_ended
    );
    for (k, v) in &run.rentals.by_status {
        let _ = write!(h, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    h.push_str("</table><h3>Pending and unscorable by reason</h3><table>");
    if run.rentals.by_reason.is_empty() {
        h.push_str("<tr><td>none</td></tr>");
    }
    for (k, v) in &run.rentals.by_reason {
        let _ = write!(h, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    let _ = write!(
        h,
        "</table></div><div><h3>Members by status</h3><table><tr><th>total</th><td>{}</td></tr><tr><th>eligible</th><td>{}</td></tr>",
        run.members.total, run.members.eligible
    );
    for (k, v) in &run.members.by_status {
        let _ = write!(h, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    h.push_str("</table></div></div>");
}

/// How far before end_at rentals' last samples fall, and (with a state)
/// how many rentals wait only for their tail: what `tail_within` is set from.
fn tail(h: &mut String, run: &RunJson) {
    let t = &run.rentals.last_sample_before_end;
    let secs = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{v:.1} s"));
    let waiting = run.state.as_ref().map_or_else(String::new, |s| {
        format!(
            " {} rentals are scored (or too short) and wait only for their tail.",
            s.counts.awaiting_tail
        )
    });
    let _ = write!(
        h,
        "<h2>Last sample before end_at</h2><p class=muted>A rental is final only once a sample of its car at or after \
         end_at − {tw} is in (<code>completeness.tail_within</code>).{waiting} Over {n} assessed rentals with samples \
         ({none} without any): median {p50}, p90 {p90}, p99 {p99}, max {max}.</p>{chart}",
        tw = esc(&run.model.tail_within),
        n = t.rentals_with_samples,
        none = t.rentals_without_samples,
        p50 = secs(t.p50_s),
        p90 = secs(t.p90_s),
        p99 = secs(t.p99_s),
        max = secs(t.max_s),
        chart = bars(
            &t.histogram
                .iter()
                .map(|(l, _)| l.to_string())
                .collect::<Vec<_>>(),
            &t.histogram
                .iter()
                .map(|&(_, n)| n as f64)
                .collect::<Vec<_>>(),
            "#8a5a44",
            0
        ),
    );
}

/// Pooled factor rates over scored rentals, the inputs of the formula.
fn factors(h: &mut String, assessed: &[(&Rental, &Assessment)]) {
    let scored: Vec<&Assessment> = assessed
        .iter()
        .filter(|(_, a)| a.score.is_some())
        .map(|(_, a)| *a)
        .collect();
    let km: f64 = scored.iter().map(|a| a.features.distance_km).sum();
    let r = pooled_rates(scored.iter().map(|a| &a.features));
    let labels = [
        "accel /100km",
        "brake /100km",
        "stops /100km",
        "speeding %",
        "excess %",
    ]
    .map(String::from);
    let values = [
        r.harsh_accel_per_100km,
        r.harsh_brake_per_100km,
        r.unstable_stop_per_100km,
        r.speeding_pct,
        r.excess_speeding_pct,
    ];
    let _ = write!(
        h,
        "<h2>Factor rates</h2><p class=muted>Pooled over {} scored rentals, {km:.0} km: harsh accelerations, harsh brakes and unstable stops per 100 km; speeding and excess speeding as % of moving seconds.</p>{}",
        scored.len(),
        bars(&labels, &values, "#c26a2d", 2)
    );
}

fn rejections(
    h: &mut String,
    title: &str,
    rules: &std::collections::BTreeMap<&'static str, RuleReport>,
) {
    let _ = write!(h, "<h2>{title}</h2>");
    if rules.is_empty() {
        h.push_str("<p>None.</p>");
        return;
    }
    h.push_str("<table><tr><th>rule</th><th>rows</th><th>meaning</th><th>first example</th></tr>");
    for (rule, r) in rules {
        let ex = r
            .examples
            .first()
            .map_or(String::new(), |e| format!("{} row {}", e.file, e.row));
        let _ = write!(
            h,
            "<tr><td>{rule}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            r.count,
            esc(r.description),
            esc(&ex)
        );
    }
    h.push_str("</table>");
}

/// Ten 10-point bins over 0–100; 100 falls in the last.
fn histogram(scores: &[f64], color: &str) -> String {
    let mut bins = [0.0; 10];
    for &s in scores {
        bins[((s / 10.0).floor().max(0.0) as usize).min(9)] += 1.0;
    }
    let labels: Vec<String> = (0..10).map(|i| format!("{}", i * 10)).collect();
    bars(&labels, &bins, color, 0)
}

/// A vertical bar chart as inline SVG.
fn bars(labels: &[String], values: &[f64], color: &str, decimals: usize) -> String {
    let (w, hgt, pad) = (480.0, 220.0, 30.0);
    let max = values.iter().copied().fold(0.0_f64, f64::max).max(1e-9);
    let step = (w - 2.0 * pad) / values.len().max(1) as f64;
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{hgt}' viewBox='0 0 {w} {hgt}' role='img'>"
    );
    for (i, (&v, label)) in values.iter().zip(labels).enumerate() {
        let bh = (hgt - 2.0 * pad) * v / max;
        let x = pad + i as f64 * step;
        let y = hgt - pad - bh;
        let _ = write!(
            s,
            "<rect x='{x:.1}' y='{y:.1}' width='{:.1}' height='{bh:.1}' fill='{color}'><title>{}: {v:.decimals$}</title></rect>\
             <text x='{:.1}' y='{:.1}' font-size='10' text-anchor='middle'>{v:.decimals$}</text>\
             <text x='{:.1}' y='{:.1}' font-size='10' text-anchor='middle'>{}</text>",
            step * 0.8,
            esc(label),
            x + step * 0.4,
            y - 3.0,
            x + step * 0.4,
            hgt - pad + 14.0,
            esc(label),
        );
    }
    s.push_str("</svg>");
    s
}
