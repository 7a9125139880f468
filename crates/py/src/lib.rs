//! `pitwall._engine`: the score engine for Python. Every function here only
//! converts: Arrow data arrives through the C data interface (anything
//! with `__arrow_c_stream__`: pyarrow, polars, pandas 2.2+), the engine
//! crates do the work, and results go back as `pyarrow.Table`s. The public
//! surface, with its docstrings and types, is `python/pitwall/__init__.py`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use arrow_array::RecordBatch;
use arrow_pyarrow::{PyArrowType, Table};
use pitwall_score::Model;
use pitwall_score_job::JobError;
use pitwall_score_job::frames::{self, FrameOptions, Frames};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A pitwall model: the embedded default, or one read from TOML.
#[pyclass(name = "Model", module = "pitwall", frozen)]
struct PyModel(Model);

#[pymethods]
impl PyModel {
    /// The model shipped with pitwall (what the binary uses without --model).
    #[staticmethod]
    fn default() -> Self {
        PyModel(Model::default())
    }

    /// A model from a TOML file, as `pitwall score run --model` reads it.
    #[staticmethod]
    fn load(path: std::path::PathBuf) -> PyResult<Self> {
        let source = format!("model file {}", path.display());
        let text = std::fs::read_to_string(&path)
            .map_err(|e| PyValueError::new_err(format!("cannot read {source}: {e}")))?;
        Self::from_toml(&text, &source)
    }

    /// A model from its TOML text; `source` names it in errors.
    #[staticmethod]
    #[pyo3(signature = (text, source = "model"))]
    fn from_toml(text: &str, source: &str) -> PyResult<Self> {
        Model::from_toml(text)
            .map(PyModel)
            .map_err(|e| PyValueError::new_err(format!("{source}: {e}")))
    }

    /// `name@version`, as run.json and every result row name it.
    #[getter]
    fn id(&self) -> String {
        self.0.id()
    }

    fn to_toml(&self) -> PyResult<String> {
        self.0
            .to_toml()
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    fn __str__(&self) -> PyResult<String> {
        self.to_toml()
    }

    fn __repr__(&self) -> String {
        format!("<pitwall.Model {}>", self.0.id())
    }

    fn __eq__(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

/// Runs engine code with the GIL released; a panic becomes a RuntimeError
/// instead of unwinding into the interpreter (or aborting a Spark worker).
fn engine<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, JobError> + Send) -> PyResult<T> {
    py.detach(|| catch_unwind(AssertUnwindSafe(f)))
        .map_err(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            PyRuntimeError::new_err(format!("pitwall panicked, a bug in pitwall: {what}"))
        })?
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

fn table(py: Python<'_>, batch: RecordBatch) -> PyResult<Py<PyAny>> {
    let schema = batch.schema();
    let t =
        Table::try_new(vec![batch], schema).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(PyArrowType(t).into_pyobject(py)?.unbind())
}

/// A table's batches; an empty table is one empty batch of its schema, so
/// that a column of the wrong type is refused even with no rows (Spark's
/// driver checks a DataFrame's schema that way before a job starts).
fn batches(t: PyArrowType<Table>) -> Vec<RecordBatch> {
    let (batches, schema) = t.0.into_inner();
    if batches.is_empty() {
        vec![RecordBatch::new_empty(schema)]
    } else {
        batches
    }
}

fn as_dict(py: Python<'_>, f: Frames) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("rental_scores", table(py, f.rental_scores)?)?;
    if let Some(m) = f.member_scores {
        d.set_item("member_scores", table(py, m)?)?;
    }
    d.set_item("rejected_rentals", table(py, f.rejected_rentals)?)?;
    d.set_item("rejected_telemetry", table(py, f.rejected_telemetry)?)?;
    let c = f.counts;
    let counts = PyDict::new(py);
    for (k, v) in [
        ("rental_rows", c.rental_rows),
        ("rentals_valid", c.rentals_valid),
        ("rentals_considered", c.rentals_considered),
        ("telemetry_rows", c.telemetry_rows),
        ("telemetry_valid", c.telemetry_valid),
        ("samples_in_rentals", c.samples_in_rentals),
        ("samples_outside_rentals", c.samples_outside_rentals),
        ("duplicate_samples", c.duplicate_samples),
    ] {
        counts.set_item(k, v)?;
    }
    d.set_item("counts", counts)?;
    Ok(d)
}

/// Scores rentals from their telemetry; a dict of tables and counts.
#[pyfunction]
#[pyo3(signature = (rentals, telemetry, as_of_ms, model, grace_ms = None, members = true))]
fn score<'py>(
    py: Python<'py>,
    rentals: PyArrowType<Table>,
    telemetry: PyArrowType<Table>,
    as_of_ms: i64,
    model: &PyModel,
    grace_ms: Option<i64>,
    members: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let (rentals, telemetry) = (batches(rentals), batches(telemetry));
    let o = FrameOptions {
        as_of: as_of_ms,
        model: &model.0,
        grace_ms,
        members,
    };
    let f = engine(py, || frames::score(&rentals, &telemetry, &o))?;
    as_dict(py, f)
}

/// Member scores at as_of from rental results.
#[pyfunction]
fn member_scores(
    py: Python<'_>,
    results: PyArrowType<Table>,
    as_of_ms: i64,
    model: &PyModel,
) -> PyResult<Py<PyAny>> {
    let results = batches(results);
    let b = engine(py, || frames::member_scores(&results, as_of_ms, &model.0))?;
    table(py, b)
}

/// Rentals checked under the contract: (valid rentals, rejected rows).
#[pyfunction]
fn check_rentals(py: Python<'_>, rentals: PyArrowType<Table>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
    let rentals = batches(rentals);
    let (valid, rejected) = engine(py, || frames::check_rentals(&rentals))?;
    Ok((table(py, valid)?, table(py, rejected)?))
}

/// Telemetry checked under the contract: (valid rows as given, rejected rows).
#[pyfunction]
fn check_telemetry(
    py: Python<'_>,
    telemetry: PyArrowType<Table>,
) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
    let telemetry = batches(telemetry);
    let (valid, rejected) = engine(py, || frames::check_telemetry(&telemetry))?;
    Ok((table(py, valid)?, table(py, rejected)?))
}

/// A time as ms since the epoch, parsed as the binary parses --as-of.
#[pyfunction]
fn parse_time(text: &str) -> PyResult<i64> {
    pitwall_lake::tabular::parse_time(text.trim()).ok_or_else(|| {
        PyValueError::new_err(format!(
            "{text:?} is not a time: give RFC 3339, such as 2026-11-01T00:00:00Z"
        ))
    })
}

/// For tests of the panic path only: panics inside the engine guard.
#[pyfunction]
fn _panic(py: Python<'_>) -> PyResult<()> {
    engine(py, || -> Result<(), JobError> { panic!("on purpose") })
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyModel>()?;
    m.add_function(wrap_pyfunction!(score, m)?)?;
    m.add_function(wrap_pyfunction!(member_scores, m)?)?;
    m.add_function(wrap_pyfunction!(check_rentals, m)?)?;
    m.add_function(wrap_pyfunction!(check_telemetry, m)?)?;
    m.add_function(wrap_pyfunction!(parse_time, m)?)?;
    m.add_function(wrap_pyfunction!(_panic, m)?)?;
    m.add(
        "DEFAULT_MODEL_TOML",
        pitwall_score::model::DEFAULT_MODEL_TOML,
    )?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
