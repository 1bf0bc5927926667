//! Delivery reports of one topic partition counted in Rust, not by a Python function per record.
//!
//! librdkafka reports every produced record once (confluent-kafka calls the record's `on_delivery`
//! from `poll`). The changelog sends one record per changed window per checkpoint, and a Python
//! callback per report cost about 0.3 us of the event loop's thread per record beside a C-level one
//! (`benchmarks.producer`). A `DeliveryTally` is that C-level callable: a success is counted and its
//! offset kept (the highest: the partition's records are reported in order), and every failure is
//! handed, as it came, to the Python function it was given - the producer's own report handler - so
//! errors are seen and handled exactly as with that function alone (see streams.kafka.producer).

use pyo3::prelude::*;
use pyo3::intern;

#[pyclass(module = "streams._native")]
pub struct DeliveryTally {
    on_error: Py<PyAny>,
    /// Records reported delivered.
    #[pyo3(get)]
    delivered: u64,
    /// The highest offset reported delivered (-1: none yet).
    #[pyo3(get)]
    offset: i64,
}

#[pymethods]
impl DeliveryTally {
    #[new]
    fn new(on_error: Py<PyAny>) -> Self {
        DeliveryTally { on_error, delivered: 0, offset: -1 }
    }

    /// `on_delivery(err, msg)`: count a success, pass a failure (or an odd report) on.
    fn __call__(&mut self, py: Python<'_>, err: &Bound<'_, PyAny>, msg: &Bound<'_, PyAny>) -> PyResult<()> {
        if err.is_none() {
            // A delivered record has an offset; a report without one is the handler's to judge.
            if let Ok(offset) = msg.call_method0(intern!(py, "offset"))?.extract::<i64>() {
                self.delivered += 1;
                if offset > self.offset {
                    self.offset = offset;
                }
                return Ok(());
            }
        }
        self.on_error.call1(py, (err, msg))?;
        Ok(())
    }
}
