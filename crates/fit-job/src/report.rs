//! `report.html`: one self-contained page (inline SVG) a data scientist
//! reads before promoting a model: the coefficients, lift, Lorenz curves,
//! calibration, double lift, the member view and the promotion checks.

use std::fmt::Write as _;

use pitwall_fit::validate::Lift;

use crate::claims::ClaimsReport;
use crate::fitting::FitFigures;
use crate::judge::{ModelFigures, Validation};
use crate::svg::{Chart, Kind, Series};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}\
h2{margin-top:2rem;border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:.5rem 0}\
td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}th{background:#f4f4f4}td:first-child{text-align:left}\
.ok{color:#176f2c;font-weight:bold}.no{color:#b00020;font-weight:bold}.grid{display:grid;grid-template-columns:1fr 1fr;gap:1rem}.muted{color:#666}";

const CANDIDATE: &str = "#1f6fb4";
const CURRENT: &str = "#e08a1e";
const ACTUAL: &str = "#333";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// The page; `fit` is present for `score fit`, absent for `score validate`.
pub fn render(
    title: &str,
    v: &Validation,
    fit: Option<&FitFigures>,
    claims: &ClaimsReport,
) -> String {
    let mut h = String::new();
    let verdict = if v.recommended {
        "<span class=ok>recommended for promotion</span>"
    } else {
        "<span class=no>not recommended</span>"
    };
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{t}</title><style>{STYLE}</style></head><body>\
         <h1>{t}</h1><p>{m}: {verdict}</p><p class=muted>validation period {from} – {to}: {n} scored rentals, \
         {km:.0} km, {c} at-fault claims, {members} members · claims input: {rows} rows, {valid} valid, {rej} rejected</p>",
        t = esc(title),
        m = esc(&v.candidate.model),
        from = esc(&v.from),
        to = esc(&v.to),
        n = v.rentals,
        km = v.distance_km,
        c = v.claims,
        members = v.members,
        rows = claims.rows,
        valid = claims.valid,
        rej = claims.rejected.values().map(|r| r.count).sum::<u64>(),
    );
    checks(&mut h, v);
    if let Some(f) = fit {
        coefficients(&mut h, f);
    }
    figures_table(&mut h, v);
    h.push_str("<h2>Charts</h2><div class=grid>");
    h.push_str(&lift_chart(v));
    h.push_str(&lorenz_chart(v));
    h.push_str(&calibration_chart(&v.candidate));
    if let Some(d) = &v.double_lift {
        let pts = |f: &dyn Fn(&pitwall_fit::validate::DoubleDecile) -> f64| {
            d.iter()
                .map(|x| (x.decile as f64, f(x)))
                .collect::<Vec<_>>()
        };
        h.push_str(
            &Chart {
                title: "Double lift: deciles of candidate / current expectation",
                x_label: "decile of the ratio",
                y_label: "claims per 1,000 km",
                series: vec![
                    Series {
                        name: "actual",
                        color: ACTUAL,
                        kind: Kind::Dots,
                        points: pts(&|x| x.actual_per_1000_km),
                    },
                    Series {
                        name: "candidate",
                        color: CANDIDATE,
                        kind: Kind::Line,
                        points: pts(&|x| x.candidate_per_1000_km),
                    },
                    Series {
                        name: "current",
                        color: CURRENT,
                        kind: Kind::Line,
                        points: pts(&|x| x.current_per_1000_km),
                    },
                ],
                diagonal: false,
            }
            .render(),
        );
    }
    h.push_str("</div>");
    deciles(
        &mut h,
        "Deciles of predicted risk (candidate)",
        &v.candidate.lift,
    );
    h.push_str("</body></html>\n");
    h
}

fn checks(h: &mut String, v: &Validation) {
    h.push_str(
        "<h2>Promotion checks</h2><table><tr><th>check</th><th>result</th><th>detail</th></tr>",
    );
    for c in &v.checks {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td style='text-align:left'>{}</td></tr>",
            c.name,
            if c.passed {
                "<span class=ok>pass</span>"
            } else {
                "<span class=no>fail</span>"
            },
            esc(&c.detail)
        );
    }
    h.push_str("</table>");
}

fn coefficients(h: &mut String, f: &FitFigures) {
    let _ = write!(
        h,
        "<h2>Fit</h2><p class=muted>{n} rentals, {km:.0} km, {c} claims · deviance {d:.2} (null {nd:.2}) · \
         log-likelihood {ll:.2} · AIC {aic:.2} · Pearson dispersion {disp:.3} · {it} IRLS iterations</p>",
        n = f.rentals,
        km = f.distance_km,
        c = f.claims,
        d = f.fit.deviance,
        nd = f.fit.null_deviance,
        ll = f.fit.log_likelihood,
        aic = f.fit.aic,
        disp = f.fit.dispersion,
        it = f.fit.iterations,
    );
    for w in &f.warnings {
        let _ = write!(h, "<p class=no>{}</p>", esc(w));
    }
    h.push_str(
        "<table><tr><th>coefficient</th><th>β</th><th>SE</th><th>95 % interval</th><th>multiplier e^β</th>\
         <th>LR χ²</th><th>p</th><th>quasi SE</th><th></th></tr>",
    );
    let span = f
        .fit
        .coefficients
        .iter()
        .skip(1)
        .map(|c| c.ci_low.abs().max(c.ci_high.abs()))
        .fold(1e-9, f64::max);
    for c in &f.fit.coefficients {
        // A bar from the interval's ends, centred on 0, for the factors.
        let bar = if c.name == "intercept" {
            String::new()
        } else {
            let x = |v: f64| 100.0 + v / span * 95.0;
            format!(
                "<svg width=200 height=14><line x1=100 y1=0 x2=100 y2=14 stroke='#bbb'/>\
                 <line x1='{:.1}' y1=7 x2='{:.1}' y2=7 stroke='{CANDIDATE}' stroke-width=3/>\
                 <circle cx='{:.1}' cy=7 r=3 fill='{ACTUAL}'/></svg>",
                x(c.ci_low),
                x(c.ci_high),
                x(c.estimate)
            )
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:.5}</td><td>{:.5}</td><td>[{:.5}, {:.5}]</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{:.5}</td><td>{bar}</td></tr>",
            esc(&c.name),
            c.estimate,
            c.std_error,
            c.ci_low,
            c.ci_high,
            c.estimate.exp(),
            opt(c.lr_statistic, 2),
            c.lr_p_value.map_or("–".into(), |p| format!("{p:.2e}")),
            c.quasi_std_error
        );
    }
    h.push_str("</table>");
}

fn figures_table(h: &mut String, v: &Validation) {
    let models: Vec<&ModelFigures> = std::iter::once(&v.candidate)
        .chain(v.current.as_ref())
        .collect();
    h.push_str(
        "<h2>Validation figures</h2><table><tr><th>model</th><th>Gini</th><th>95 % interval</th>\
         <th>worst/best decile</th><th>actual/expected</th><th>A/E interval</th><th>calibration slope</th>\
         <th>members ≥ 90 vs ≤ 50 (rate ratio)</th><th>interval</th></tr>",
    );
    for m in models {
        let mv = &m.member_view;
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:.3}</td><td>[{:.3}, {:.3}]</td><td>{}</td><td>{}</td><td>[{}, {}]</td><td>{}</td>\
             <td>{} ({} vs {} members)</td><td>[{}, {}]</td></tr>",
            esc(&m.model),
            m.gini.normalised,
            m.gini.ci_low,
            m.gini.ci_high,
            opt(m.lift.worst_over_best, 2),
            opt(m.calibration.actual_over_expected, 3),
            opt(m.calibration.ci_low, 3),
            opt(m.calibration.ci_high, 3),
            opt(m.calibration.slope, 3),
            opt(mv.rate_ratio, 3),
            mv.high_members,
            mv.low_members,
            opt(mv.ci_low, 3),
            opt(mv.ci_high, 3),
        );
    }
    h.push_str("</table>");
    if let Some(s) = &v.stability {
        let _ = write!(
            h,
            "<p>Stability: PSI of member scores {:.3}; {} of {} scored members ({:.1} %) would change grade.</p>",
            s.psi,
            s.grade_changes,
            s.members_scored,
            s.grade_change_share * 100.0
        );
    }
}

fn lift_chart(v: &Validation) -> String {
    let bars = |l: &Lift| {
        l.deciles
            .iter()
            .map(|d| (d.decile as f64, d.per_1000_km))
            .collect::<Vec<_>>()
    };
    let expected = |l: &Lift| {
        l.deciles
            .iter()
            .map(|d| {
                (
                    d.decile as f64,
                    if d.km > 0.0 {
                        d.expected / d.km * 1000.0
                    } else {
                        0.0
                    },
                )
            })
            .collect::<Vec<_>>()
    };
    let mut series = vec![
        Series {
            name: "candidate: actual",
            color: CANDIDATE,
            kind: Kind::Bars,
            points: bars(&v.candidate.lift),
        },
        Series {
            name: "candidate: expected",
            color: ACTUAL,
            kind: Kind::Line,
            points: expected(&v.candidate.lift),
        },
    ];
    if let Some(c) = &v.current {
        series.push(Series {
            name: "current: actual",
            color: CURRENT,
            kind: Kind::Bars,
            points: bars(&c.lift),
        });
    }
    Chart {
        title: "Lift: deciles of predicted risk, equal exposure",
        x_label: "decile (1 = lowest predicted risk)",
        y_label: "claims per 1,000 km",
        series,
        diagonal: false,
    }
    .render()
}

fn lorenz_chart(v: &Validation) -> String {
    let mut series = vec![Series {
        name: "candidate",
        color: CANDIDATE,
        kind: Kind::Line,
        points: v.candidate.lorenz.clone(),
    }];
    if let Some(c) = &v.current {
        series.push(Series {
            name: "current",
            color: CURRENT,
            kind: Kind::Line,
            points: c.lorenz.clone(),
        });
    }
    Chart {
        title: "Ordered Lorenz curves",
        x_label: "share of exposure (lowest risk first)",
        y_label: "share of claims",
        series,
        diagonal: true,
    }
    .render()
}

fn calibration_chart(m: &ModelFigures) -> String {
    let points = m
        .lift
        .deciles
        .iter()
        .filter(|d| d.km > 0.0)
        .map(|d| (d.expected / d.km * 1000.0, d.per_1000_km))
        .collect();
    Chart {
        title: "Calibration: expected against actual, by decile",
        x_label: "expected claims per 1,000 km",
        y_label: "actual claims per 1,000 km",
        series: vec![Series {
            name: "candidate",
            color: CANDIDATE,
            kind: Kind::Dots,
            points,
        }],
        diagonal: true,
    }
    .render()
}

fn deciles(h: &mut String, title: &str, l: &Lift) {
    let _ = write!(
        h,
        "<h2>{title}</h2><table><tr><th>decile</th><th>km</th><th>claims</th><th>expected</th><th>per 1,000 km</th><th>actual/expected</th></tr>"
    );
    for d in &l.deciles {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:.0}</td><td>{:.1}</td><td>{:.1}</td><td>{:.3}</td><td>{}</td></tr>",
            d.decile,
            d.km,
            d.claims,
            d.expected,
            d.per_1000_km,
            opt(d.actual_over_expected, 3)
        );
    }
    h.push_str("</table>");
}
