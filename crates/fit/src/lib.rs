//! Fitting the score model to accident history (`score-model-fitting.md`):
//! per scored rental, at-fault claims are Poisson with mean
//! `d/100 × exp(β₀ + Σ βᵢ xᵢ)`. [`poisson::fit`] finds β by iteratively
//! reweighted least squares, with an optional ridge penalty on β₁…βₖ, and
//! reports what a data scientist checks a GLM by; [`validate`] judges a
//! model on a later period (lift, Gini). The systems are p × p
//! with p = 6: solved by hand ([`linalg`]), no BLAS.

pub mod calibration;
pub mod exp;
pub mod gini;
pub mod linalg;
pub mod poisson;
pub mod validate;

pub use poisson::{Coefficient, Design, Fit, FitError, FitOptions, fit};
