//! The validation of `score-model-fitting.md`: a model judged on a period
//! it did not see — lift, Gini, calibration, the member view — and a
//! candidate compared with the current model (double lift, stability,
//! promotion checks).

use pitwall_fit::calibration::{Calibration, MemberOutcome, MemberView, calibration, member_view};
use pitwall_fit::gini::{Gini, ginis_ordered};
use pitwall_fit::validate::{Compared, DoubleDecile, Lift, Ordered, Scored, double_lift};
use pitwall_score::Model;
use serde::Serialize;

use crate::data::{Period, RentalRow, Results, factors, fits};
use crate::members::{ByMember, scores};
use crate::par::{beside, each};
use crate::{FitJobError, Result, rfc3339};

/// Members scoring at least this against at most `LOW`: the product's claim.
pub const HIGH: f64 = 90.0;
pub const LOW: f64 = 50.0;

/// How a model's expected claims are sized.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleSource {
    /// The model's own fitted intercept (`[fit] intercept`).
    Fit,
    /// A model without one: claims per 100 km at zero events chosen so
    /// that it expects the claims of the rentals before the period.
    Before,
    /// No rental before the period: sized on the period itself, so its
    /// actual/expected is 1 by construction.
    Period,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelFigures {
    pub model: String,
    /// log claims per 100 km at zero events, and where it came from.
    pub log_base: f64,
    pub scale: ScaleSource,
    pub lift: Lift,
    pub gini: Gini,
    pub calibration: Calibration,
    pub member_view: MemberView,
    /// The ordered Lorenz curve, about 100 points, for the report.
    pub lorenz: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stability {
    /// PSI of the member score distribution, candidate against current.
    pub psi: f64,
    pub members_scored: usize,
    pub grade_changes: usize,
    pub grade_change_share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    pub from: String,
    pub to: String,
    pub rentals: usize,
    pub distance_km: f64,
    pub claims: u64,
    pub members: usize,
    pub candidate: ModelFigures,
    pub current: Option<ModelFigures>,
    pub double_lift: Option<Vec<DoubleDecile>>,
    pub stability: Option<Stability>,
    pub checks: Vec<Check>,
    pub recommended: bool,
}

/// What a validation reads.
pub struct Judged<'a> {
    pub results: &'a Results,
    pub period: Period,
    pub resamples: usize,
    pub seed: u64,
    pub threads: usize,
}

/// Per rental of the period, a model's expected claims.
struct Expected {
    log_base: f64,
    scale: ScaleSource,
    per_rental: Vec<f64>,
}

fn expected(model: &Model, rows: &[&RentalRow], before: &[&RentalRow]) -> Expected {
    // The relative risk as the GLM writes it, exp(Σ xᵢ ln mᵢ): one exp per
    // rental where Π mᵢ^xᵢ takes five powf (multipliers are > 0). The
    // figures read only its order and sums; member scores keep the score
    // job's own formula.
    let ln_m = model.factors().map(|(_, f)| f.multiplier.ln());
    let rr = |r: &RentalRow| {
        let x = factors(model, &r.features);
        let eta: f64 = x.iter().zip(&ln_m).map(|(x, l)| x * l).sum();
        r.features.distance_km / 100.0 * eta.exp()
    };
    let (log_base, scale) = match &model.fit {
        Some(f) => (f.intercept, ScaleSource::Fit),
        None => {
            let (src, on) = if before.is_empty() {
                (ScaleSource::Period, rows)
            } else {
                (ScaleSource::Before, before)
            };
            let claims: f64 = on.iter().map(|r| f64::from(r.claims)).sum();
            let exposure: f64 = on.iter().map(|r| rr(r)).sum();
            // No claims at all: any small base; the figures then say "no claims".
            let base = if claims > 0.0 && exposure > 0.0 {
                claims / exposure
            } else {
                1e-9
            };
            (base.ln(), src)
        }
    };
    let per_rental = rows.iter().map(|r| rr(r) * log_base.exp()).collect();
    Expected {
        log_base,
        scale,
        per_rental,
    }
}

/// Each rental of the period as a model judges it.
fn scored(e: &Expected, period: &[&RentalRow]) -> Vec<Scored> {
    period
        .iter()
        .zip(&e.per_rental)
        .map(|(r, &x)| Scored {
            risk: x / r.features.distance_km,
            km: r.features.distance_km,
            claims: f64::from(r.claims),
            expected: x,
        })
        .collect()
}

/// The figures of one model on the period.
fn figures(
    model: &Model,
    e: &Expected,
    scored: &Ordered<'_>,
    members: &[MemberOutcome],
    gini: Gini,
) -> Result<ModelFigures> {
    let cal = calibration(scored.rows)
        .map_err(|e| FitJobError::Refused(format!("calibration of {}: {e}", model.id())))?;
    Ok(ModelFigures {
        model: model.id(),
        log_base: e.log_base,
        scale: e.scale,
        lift: scored.lift(),
        gini,
        calibration: cal,
        member_view: member_view(members, HIGH, LOW),
        lorenz: scored.lorenz(100),
    })
}

/// A member's score and grade, when scored.
type Graded<'m> = Option<(f64, &'m str)>;

/// Members at the end of the period under `model`: their scores, and their
/// distance and claims in the period.
fn member_outcomes<'m>(
    j: &Judged<'_>,
    by: &ByMember<'_>,
    model: &'m Model,
) -> (Vec<MemberOutcome>, Vec<Graded<'m>>) {
    let as_of = j.period.to - 1;
    let ms = scores(by, model, as_of);
    let outcomes = by
        .members()
        .zip(&ms)
        .map(|(entries, m)| {
            let (km, claims) = entries
                .iter()
                .filter(|e| fits(e.status, &e.features) && j.period.holds(e.end_at))
                .fold((0.0, 0.0), |(k, c), e| {
                    (k + e.features.distance_km, c + f64::from(e.claims))
                });
            MemberOutcome {
                score: m.score,
                km,
                claims,
            }
        })
        .collect();
    let grades = ms.iter().map(|m| m.score.zip(m.grade)).collect();
    (outcomes, grades)
}

/// Judges `candidate` on the period, against `current` when given.
pub fn judge(j: &Judged<'_>, candidate: &Model, current: Option<&Model>) -> Result<Validation> {
    let period: Vec<&RentalRow> = j
        .results
        .rows
        .iter()
        .filter(|r| r.fits() && j.period.holds(r.end_at))
        .collect();
    let before: Vec<&RentalRow> = j
        .results
        .rows
        .iter()
        .filter(|r| r.fits() && r.end_at < j.period.from)
        .collect();
    if period.is_empty() {
        return Err(FitJobError::Refused(format!(
            "no scored rental ended in [{}, {}): nothing to validate on; choose a period the results cover",
            rfc3339(j.period.from),
            rfc3339(j.period.to)
        )));
    }
    let models: Vec<&Model> = std::iter::once(candidate).chain(current).collect();
    // The models are independent until they are compared: what runs on
    // one thread runs beside the other model's.
    let (by, expected) = beside(
        || ByMember::new(j.results, j.threads),
        || each(&models, |m| expected(m, &period, &before)),
    );
    let members: Vec<_> = each(&models, |m| member_outcomes(j, &by, m));
    let rows: Vec<Vec<Scored>> = each(&expected, |e| scored(e, &period));
    // Sorted by risk once for the Gini, the lift and the Lorenz curve.
    let ordered: Vec<Ordered<'_>> = each(&rows, |r| Ordered::new(r));
    // Bootstrapped together: every model is judged on the same resamples.
    let g = ginis_ordered(&ordered, j.resamples, j.seed, j.threads);
    let ks: Vec<usize> = (0..models.len()).collect();
    let (figs, compared) = beside(
        || {
            each(&ks, |&k| {
                figures(
                    models[k],
                    &expected[k],
                    &ordered[k],
                    &members[k].0,
                    g[k].clone(),
                )
            })
        },
        || match (rows.as_slice(), members.as_slice()) {
            ([cand, cur], [m_cand, m_cur]) => Some((
                double_lift(&compared(cand, cur)),
                stability(&m_cand.1, &m_cur.1),
            )),
            _ => None,
        },
    );
    let mut figs = figs.into_iter().collect::<Result<Vec<_>>>()?.into_iter();
    let candidate_figures = figs
        .next()
        .ok_or_else(|| FitJobError::Refused("no model to judge".into()))?;
    let mut v = Validation {
        from: rfc3339(j.period.from),
        to: rfc3339(j.period.to),
        rentals: period.len(),
        distance_km: period.iter().map(|r| r.features.distance_km).sum(),
        claims: period.iter().map(|r| u64::from(r.claims)).sum(),
        members: members[0].0.iter().filter(|m| m.km > 0.0).count(),
        candidate: candidate_figures,
        current: figs.next(),
        double_lift: None,
        stability: None,
        checks: Vec::new(),
        recommended: false,
    };
    if let Some((double, stable)) = compared {
        v.double_lift = Some(double);
        v.stability = Some(stable);
    }
    v.checks = checks(&v);
    v.recommended = v.checks.iter().all(|c| c.passed);
    Ok(v)
}

fn compared(cand: &[Scored], cur: &[Scored]) -> Vec<Compared> {
    cand.iter()
        .zip(cur)
        .map(|(a, b)| Compared {
            km: a.km,
            claims: a.claims,
            candidate: a.expected,
            current: b.expected,
        })
        .collect()
}

fn stability(candidate: &[Graded<'_>], current: &[Graded<'_>]) -> Stability {
    let scores = |v: &[Graded<'_>]| v.iter().flatten().map(|(s, _)| *s).collect::<Vec<f64>>();
    let both: Vec<_> = candidate
        .iter()
        .zip(current)
        .filter_map(|(a, b)| a.as_ref().zip(b.as_ref()))
        .collect();
    let changes = both.iter().filter(|(a, b)| a.1 != b.1).count();
    Stability {
        psi: pitwall_score::gates::psi(&scores(current), &scores(candidate)),
        members_scored: both.len(),
        grade_changes: changes,
        grade_change_share: if both.is_empty() {
            0.0
        } else {
            changes as f64 / both.len() as f64
        },
    }
}

/// The promotion checks of the spec; the grade-change share is reported,
/// not judged.
fn checks(v: &Validation) -> Vec<Check> {
    let c = &v.candidate;
    let mut out = vec![
        Check {
            name: "gini_interval_above_zero",
            passed: c.gini.ci_low > 0.0,
            detail: format!(
                "Gini {:.3}, 95 % interval [{:.3}, {:.3}]",
                c.gini.normalised, c.gini.ci_low, c.gini.ci_high
            ),
        },
        Check {
            name: "actual_over_expected_within_10_pct",
            passed: c
                .calibration
                .actual_over_expected
                .is_some_and(|r| (0.9..=1.1).contains(&r)),
            detail: match c.calibration.actual_over_expected {
                Some(r) => format!("actual/expected {r:.3} (must be within [0.9, 1.1])"),
                None => "the model expects no claims".into(),
            },
        },
        Check {
            name: "deciles_rise_with_risk",
            passed: c.lift.inversions <= 1,
            detail: format!(
                "{} inversion(s) among the ten deciles (at most 1)",
                c.lift.inversions
            ),
        },
    ];
    if let Some(cur) = &v.current {
        out.insert(
            1,
            Check {
                name: "gini_at_least_current",
                passed: c.gini.normalised >= cur.gini.normalised,
                detail: format!(
                    "Gini {:.3} against {:.3} for {}",
                    c.gini.normalised, cur.gini.normalised, cur.model
                ),
            },
        );
    }
    if let Some(s) = &v.stability {
        out.push(Check {
            name: "grade_change_share_reported",
            passed: true,
            detail: format!(
                "{} of {} members ({:.1} %) would change grade; PSI {:.3}",
                s.grade_changes,
                s.members_scored,
                s.grade_change_share * 100.0,
                s.psi
            ),
        });
    }
    out
}
