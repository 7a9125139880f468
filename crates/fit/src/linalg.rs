//! Small dense symmetric positive-definite systems: the p × p normal
//! equations of IRLS. Cholesky is exact enough and stable for them, and
//! refuses (None) a matrix that is not positive definite — a design whose
//! columns are dependent, such as a factor never observed.

/// A row-major p × p matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub p: usize,
    pub a: Vec<f64>,
}

impl Matrix {
    pub fn zeros(p: usize) -> Matrix {
        Matrix {
            p,
            a: vec![0.0; p * p],
        }
    }

    pub fn at(&self, i: usize, j: usize) -> f64 {
        self.a[i * self.p + j]
    }

    pub fn add(&mut self, i: usize, j: usize, v: f64) {
        self.a[i * self.p + j] += v;
    }

    /// The system of the variables `keep` alone (their rows and columns).
    pub fn sub(&self, keep: &[usize]) -> Matrix {
        let p = keep.len();
        let mut m = Matrix::zeros(p);
        for (a, &i) in keep.iter().enumerate() {
            for (b, &j) in keep.iter().enumerate() {
                m.a[a * p + b] = self.at(i, j);
            }
        }
        m
    }

    /// The lower Cholesky factor L (A = L Lᵀ), or None when A is not
    /// positive definite (relative to its diagonal).
    pub fn cholesky(&self) -> Option<Matrix> {
        let p = self.p;
        let mut l = Matrix::zeros(p);
        for j in 0..p {
            let mut d = self.at(j, j);
            for k in 0..j {
                d -= l.at(j, k) * l.at(j, k);
            }
            // NaN fails both tests: refused too.
            let floor = 1e-12 * self.at(j, j).abs().max(f64::MIN_POSITIVE);
            let definite = d.is_finite() && d > floor;
            if !definite {
                return None;
            }
            let d = d.sqrt();
            l.a[j * p + j] = d;
            for i in j + 1..p {
                let mut s = self.at(i, j);
                for k in 0..j {
                    s -= l.at(i, k) * l.at(j, k);
                }
                l.a[i * p + j] = s / d;
            }
        }
        Some(l)
    }
}

/// Solves L Lᵀ x = b for the factor `l` of [`Matrix::cholesky`].
pub fn solve(l: &Matrix, b: &[f64]) -> Vec<f64> {
    let p = l.p;
    let mut y = b.to_vec();
    for i in 0..p {
        for k in 0..i {
            y[i] -= l.at(i, k) * y[k];
        }
        y[i] /= l.at(i, i);
    }
    for i in (0..p).rev() {
        for k in i + 1..p {
            y[i] -= l.at(k, i) * y[k];
        }
        y[i] /= l.at(i, i);
    }
    y
}

/// A⁻¹ from the factor of A, column by column.
pub fn inverse(l: &Matrix) -> Matrix {
    let p = l.p;
    let mut inv = Matrix::zeros(p);
    for j in 0..p {
        let mut e = vec![0.0; p];
        e[j] = 1.0;
        for (i, v) in solve(l, &e).into_iter().enumerate() {
            inv.a[i * p + j] = v;
        }
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_and_inverts_a_positive_definite_system() {
        // A = [[4, 2, 0.4], [2, 5, 1], [0.4, 1, 3]]
        let a = Matrix {
            p: 3,
            a: vec![4.0, 2.0, 0.4, 2.0, 5.0, 1.0, 0.4, 1.0, 3.0],
        };
        let l = a.cholesky().expect("positive definite");
        let x = solve(&l, &[1.0, 2.0, 3.0]);
        for i in 0..3 {
            let ax: f64 = (0..3).map(|j| a.at(i, j) * x[j]).sum();
            assert!((ax - [1.0, 2.0, 3.0][i]).abs() < 1e-12);
        }
        let inv = inverse(&l);
        for i in 0..3 {
            for j in 0..3 {
                let e: f64 = (0..3).map(|k| a.at(i, k) * inv.at(k, j)).sum();
                assert!((e - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn a_singular_system_is_refused() {
        // Two equal columns: a factor that is a copy of another.
        let a = Matrix {
            p: 2,
            a: vec![1.0, 1.0, 1.0, 1.0],
        };
        assert!(a.cholesky().is_none());
        assert!(
            Matrix::zeros(2).cholesky().is_none(),
            "a column never observed"
        );
    }
}
