//! The fitter against statsmodels (PyPI), the reference a data scientist
//! would check it with: the same rows, GLM Poisson with log link and offset.
//! Unpenalised, every β and standard error, the deviance and the AIC agree
//! to a relative 1e-6; the ridge fit agrees with statsmodels' penalised fit
//! where the two definitions match (see `pitwall_fit::poisson`).

use std::io::Write as _;
use std::process::Command;

use pitwall_fit::{Design, FitOptions, fit};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const NAMES: [&str; 5] = [
    "harsh_accel",
    "harsh_brake",
    "unstable_stop",
    "speeding",
    "excess_speeding",
];

/// Rentals with factor values like the fleet's (mostly zero, capped) and
/// claims drawn from a planted model.
fn rows(n: usize, seed: u64) -> Design {
    let beta = [-4.2, 0.12, 0.15, 0.2, 0.03, 0.1];
    let caps = [20.0, 20.0, 10.0, 30.0, 10.0];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut d = Design {
        names: NAMES.map(String::from).to_vec(),
        ..Design::default()
    };
    for _ in 0..n {
        let km: f64 = rng.random_range(1.0..120.0);
        let xs: Vec<f64> = caps
            .iter()
            .map(|&cap| {
                if rng.random_bool(0.6) {
                    0.0
                } else {
                    rng.random_range(0.0..cap)
                }
            })
            .collect();
        let off = (km / 100.0).ln();
        let eta = off + beta[0] + xs.iter().zip(&beta[1..]).map(|(x, b)| x * b).sum::<f64>();
        let mu = eta.exp();
        let (mut y, mut p, u) = (0.0, (-mu).exp(), rng.random::<f64>());
        let mut c = p;
        while u > c && y < 50.0 {
            y += 1.0;
            p *= mu / y;
            c += p;
        }
        d.x.extend(xs);
        d.offset.push(off);
        d.y.push(y);
    }
    d
}

fn statsmodels(d: &Design, ridge: f64) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("rows.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&csv)?);
    writeln!(f, "y,offset,{}", NAMES.join(","))?;
    let k = NAMES.len();
    for i in 0..d.rows() {
        let xs: Vec<String> = d.x[i * k..(i + 1) * k]
            .iter()
            .map(|v| format!("{v:.17e}"))
            .collect();
        writeln!(f, "{},{:.17e},{}", d.y[i], d.offset[i], xs.join(","))?;
    }
    f.flush()?;
    drop(f);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fit_statsmodels.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&csv)
        .arg(ridge.to_string())
        .output()?;
    if !out.status.success() {
        return Err(format!("statsmodels: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn close(ours: f64, theirs: &serde_json::Value, rel: f64, what: &str) {
    let theirs = theirs.as_f64().unwrap_or(f64::NAN);
    let err = (ours - theirs).abs() / theirs.abs().max(1e-12);
    assert!(
        err <= rel,
        "{what}: pitwall {ours} vs statsmodels {theirs} (relative {err:.2e})"
    );
}

fn have_statsmodels() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import statsmodels.genmod.generalized_linear_model"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("PITWALL_REQUIRE_SERVICES").is_none(),
            "statsmodels is not installed: scripts/test.sh installs scripts/requirements-test.txt"
        );
        eprintln!("skipped: no statsmodels (run scripts/test.sh)");
    }
    ok
}

#[test]
fn an_unpenalised_fit_agrees_with_statsmodels_to_1e_6() -> TestResult {
    if !have_statsmodels() {
        return Ok(());
    }
    let d = rows(60_000, 17);
    let ours = fit(&d, &FitOptions::default())?;
    let theirs = statsmodels(&d, 0.0)?;
    for (j, c) in ours.coefficients.iter().enumerate() {
        close(
            c.estimate,
            &theirs["params"][j],
            1e-6,
            &format!("β {}", c.name),
        );
        close(
            c.std_error,
            &theirs["bse"][j],
            1e-6,
            &format!("se {}", c.name),
        );
    }
    close(ours.deviance, &theirs["deviance"], 1e-6, "deviance");
    close(
        ours.null_deviance,
        &theirs["null_deviance"],
        1e-6,
        "null deviance",
    );
    close(ours.log_likelihood, &theirs["llf"], 1e-6, "log-likelihood");
    close(ours.aic, &theirs["aic"], 1e-6, "AIC");
    let pearson = ours.dispersion * (d.rows() as f64 - 6.0);
    close(pearson, &theirs["pearson_chi2"], 1e-6, "Pearson χ²");
    Ok(())
}

#[test]
fn a_ridge_fit_agrees_with_statsmodels_penalised_fit() -> TestResult {
    if !have_statsmodels() {
        return Ok(());
    }
    let d = rows(20_000, 5);
    let ridge = 50.0;
    let ours = fit(
        &d,
        &FitOptions {
            ridge,
            lr_tests: false,
            ..FitOptions::default()
        },
    )?;
    let theirs = statsmodels(&d, ridge)?;
    for (j, c) in ours.coefficients.iter().enumerate() {
        close(
            c.estimate,
            &theirs["ridge_params"][j],
            1e-5,
            &format!("ridge β {}", c.name),
        );
    }
    Ok(())
}
