//! The fit recovers what was planted: 2 M synthetic rentals with claims
//! drawn from `models/planted-claims.toml`, fitted, every β within two
//! standard errors of the truth, and the truth's Gini interval above 0.

use pitwall_fit_job::data::{Period, Results};
use pitwall_fit_job::fitting::{FitConfig, fit_model};
use pitwall_fit_job::judge::{Judged, judge};
use pitwall_fit_job::synth::{SynthConfig, claims, results, spans};
use pitwall_score::Model;

const TRUTH: &str = include_str!("../../../models/planted-claims.toml");
const END: i64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z
const DAY: i64 = 86_400_000;

fn planted(n: usize, seed: u64) -> Results {
    let truth = Model::from_toml(TRUTH).expect("truth parses");
    let rows = results(&SynthConfig::new(n, seed, END), &Model::default());
    let drawn = claims(&spans(&rows), &truth, seed).expect("claims");
    let mut results = Results::from_result_rows("synthetic", &rows).expect("results");
    results.attach(&drawn);
    results
}

#[test]
fn a_fit_on_2m_planted_rentals_recovers_every_beta_within_two_standard_errors() {
    let truth = Model::from_toml(TRUTH).expect("truth parses");
    let rows = planted(2_000_000, 1);
    let cfg = FitConfig {
        split: END - 90 * DAY,
        ridge: 0.0,
        calibrate: false,
        current: Model::default(),
        name: Some("psf-fit".into()),
        version: Some("test".into()),
        resamples: 1000,
        seed: 1,
        threads: 2,
        fitted_at: "2026-12-01T00:00:00Z".into(),
    };
    let out = fit_model(&rows, &cfg).expect("fit");
    let planted_beta: Vec<f64> = std::iter::once(truth.fit.as_ref().map_or(0.0, |f| f.intercept))
        .chain(truth.factors().iter().map(|(_, f)| f.multiplier.ln()))
        .collect();
    for (c, want) in out.fit.fit.coefficients.iter().zip(&planted_beta) {
        assert!(
            (c.estimate - want).abs() <= 2.0 * c.std_error,
            "{}: fitted {:.5} ± {:.5}, planted {want:.5}",
            c.name,
            c.estimate,
            c.std_error
        );
    }
    assert!(
        out.validation.candidate.gini.ci_low > 0.0,
        "{:?}",
        out.validation.candidate.gini
    );
    assert!(
        out.fit.fit.dispersion < 1.2,
        "Poisson data are not over-dispersed: {}",
        out.fit.fit.dispersion
    );

    let judged = Judged {
        results: &rows,
        period: Period {
            from: cfg.split,
            to: END,
        },
        resamples: 1000,
        seed: 7,
        threads: 2,
    };
    let v = judge(&judged, &truth, None).expect("validation of the truth");
    assert!(
        v.candidate.gini.ci_low > 0.0,
        "the planted model's Gini interval excludes 0: {:?}",
        v.candidate.gini
    );
    assert!(
        v.candidate.lift.worst_over_best.is_some_and(|r| r > 1.5),
        "{:?}",
        v.candidate.lift
    );
}
