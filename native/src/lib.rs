//! fleetstream's compiled per-batch core (a CPython extension built by maturin).
//!
//! One entry point per operation, called once per batch: `Core.validate` takes the values of a
//! batch of `fleet.raw.v1` records and gives, per record, its curated readings, or `None` when
//! the record is left to the Python reference (`agents.validate.Validation`). The sensor types
//! and every limit come from Python at start (`schemas.compiled_core`): nothing of the
//! catalogue is written here.

mod avro;
mod core;
mod float;
mod json;
mod redis;
mod sensors;
mod time;

use std::collections::HashMap;

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::sensors::{Field, GenericRules, Kind, Limits, Rules, SensorType};

/// (name, kind, required, ge, le, literal values, default) of one struct field.
type FieldSpec = (String, String, bool, Option<f64>, Option<f64>, Vec<String>, Option<String>);
/// (name, rules, limited, at least one field, fields, generic rules).
type SensorSpec = (String, String, bool, bool, Vec<FieldSpec>, Option<GenericSpec>);
/// (min fields, max fields, longest name).
type GenericSpec = (usize, usize, usize);
/// The readings' Avro layout: the `source` symbols, and per catalogue sensor type its
/// record's (field, "boolean" | "long" | "double" | "string", optional), or `None` for a map
/// of measures.
type AvroSpec = (Vec<String>, Vec<AvroSensorSpec>);
/// (sensor type, its record's fields or `None`).
type AvroSensorSpec = (String, Option<Vec<(String, String, bool)>>);

fn avro_layout((sources, sensors): AvroSpec) -> PyResult<avro::Layout> {
    let kind = |name: &str| match name {
        "boolean" => Ok(avro::Kind::Boolean),
        "long" => Ok(avro::Kind::Long),
        "double" => Ok(avro::Kind::Double),
        "string" => Ok(avro::Kind::String),
        other => Err(pyo3::exceptions::PyValueError::new_err(format!("Avro kind {other}"))),
    };
    let sensor = |(name, fields): AvroSensorSpec| {
        let layout = match fields {
            None => avro::Sensor::Measures,
            Some(fields) => avro::Sensor::Record(
                fields
                    .into_iter()
                    .map(|(name, k, optional)| Ok(avro::Field { name, kind: kind(&k)?, optional }))
                    .collect::<PyResult<_>>()?,
            ),
        };
        Ok((name, layout))
    };
    let sensors = sensors.into_iter().map(sensor).collect::<PyResult<_>>()?;
    Ok(avro::Layout { sources, sensors })
}

fn field(spec: FieldSpec) -> PyResult<Field> {
    let (name, kind, required, ge, le, literals, default) = spec;
    let kind = match kind.as_str() {
        "bool" => Kind::Bool,
        "int" => Kind::Int,
        "float" => Kind::Float,
        "literal" => Kind::Literal(literals),
        other => return Err(pyo3::exceptions::PyValueError::new_err(format!("kind {other}"))),
    };
    Ok(Field { name, kind, required, ge, le, default })
}

fn generic((min_fields, max_fields, name_max): GenericSpec) -> Rules {
    Rules::Generic(GenericRules { min_fields, max_fields, name_max })
}

fn sensor(spec: SensorSpec) -> PyResult<SensorType> {
    let (name, rules, limited, at_least_one, fields, generic_spec) = spec;
    let rules = match (rules.as_str(), generic_spec) {
        ("struct", _) => {
            let fields = fields.into_iter().map(field).collect::<PyResult<_>>()?;
            Rules::Struct { fields, at_least_one }
        }
        ("generic", Some(spec)) => generic(spec),
        _ => Rules::Reference,
    };
    Ok(SensorType { name, rules, limited })
}

/// The validate step's compiled core, built once per worker from the catalogue and settings.
#[pyclass(frozen)]
struct Core {
    inner: core::Core,
}

#[pymethods]
impl Core {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (*, raw_prefix, sensors, unknown_types, limits, max_replays, metadata, sources, sensor_name_max, avro=None))]
    fn new(
        raw_prefix: Vec<u8>,
        sensors: Vec<SensorSpec>,
        unknown_types: Option<GenericSpec>,
        limits: (usize, usize, usize),
        max_replays: i64,
        metadata: (usize, usize, usize, usize),
        sources: Vec<String>,
        sensor_name_max: usize,
        avro: Option<AvroSpec>,
    ) -> PyResult<Self> {
        let (fields_per_sensor, fields_per_reading, name_length) = limits;
        let (max_entries, key_min, key_max, text_max) = metadata;
        let inner = core::Core {
            raw_prefix,
            sensors: sensors.into_iter().map(sensor).collect::<PyResult<_>>()?,
            unknown_types: unknown_types.map(generic),
            limits: Limits { fields_per_sensor, fields_per_reading, name_length },
            max_replays,
            metadata: core::MetadataRules { max_entries, key_min, key_max, text_max },
            sources,
            sensor_name_max,
            avro: avro.map(avro_layout).transpose()?,
        };
        Ok(Core { inner })
    }

    /// Per record of `values`: per item, its curated reading as a (device_id, JSON, Avro)
    /// triple, or the item's bytes to leave it to the reference; `None` leaves the whole
    /// record to it. `enrich(device_id)` gives the device's enrichment fields as JSON
    /// (`"device_name":...,"tags":[...]`), or a pair of that and their Avro encoding (the
    /// readings' fields `device_name` .. `tags`), or `None` (or raises an `Exception`) to leave
    /// the device's items to the reference; it is called once per device per batch. The Avro value (`avro_prefix`, the
    /// framing, then the record) is written when the core has a layout, the prefix is given
    /// and `enrich` gave the Avro fields; else it is `None` and Python writes it.
    #[pyo3(signature = (values, now_us, enrich, avro_prefix=None))]
    fn validate<'py>(
        &self,
        py: Python<'py>,
        values: Vec<Option<Bound<'py, PyBytes>>>,
        now_us: i64,
        enrich: Bound<'py, PyAny>,
        avro_prefix: Option<Vec<u8>>,
    ) -> PyResult<Vec<Option<Vec<Bound<'py, PyAny>>>>> {
        let mut enrichments: HashMap<String, Option<Enrichment<'py>>> = HashMap::new();
        let mut results = Vec::with_capacity(values.len());
        for value in values {
            let Some(value) = value else {
                results.push(None);
                continue;
            };
            let bytes = value.as_bytes();
            let Some(items) = self.inner.record(bytes, now_us) else {
                results.push(None);
                continue;
            };
            let mut out = Vec::with_capacity(items.len());
            for (item, (start, end)) in items {
                let enrichment = match &item {
                    Some(item) => self.enrichment(&enrich, &mut enrichments, &item.device_id)?,
                    None => None,
                };
                let curated = match (&item, &enrichment) {
                    (Some(item), Some(enrichment)) => {
                        item.finish(enrichment.json.as_bytes(), now_us)
                    }
                    _ => None,
                };
                out.push(match (item, curated, enrichment) {
                    (Some(item), Some(json), Some(enrichment)) => {
                        let avro = match (&avro_prefix, &enrichment.avro) {
                            (Some(prefix), Some(registry)) => {
                                item.finish_avro(prefix, registry.as_bytes(), now_us)
                            }
                            _ => None,
                        };
                        let device_id = PyString::new(py, &item.device_id);
                        let avro = avro.map(|avro| PyBytes::new(py, &avro));
                        (device_id, PyBytes::new(py, &json), avro).into_pyobject(py)?.into_any()
                    }
                    _ => PyBytes::new(py, &bytes[start..end]).into_any(),
                });
            }
            results.push(Some(out));
        }
        Ok(results)
    }
}

/// A device's enrichment fields: JSON, and Avro if given.
#[derive(Clone)]
struct Enrichment<'py> {
    json: Bound<'py, PyBytes>,
    avro: Option<Bound<'py, PyBytes>>,
}

impl Core {
    fn enrichment<'py>(
        &self,
        enrich: &Bound<'py, PyAny>,
        known: &mut HashMap<String, Option<Enrichment<'py>>>,
        device_id: &str,
    ) -> PyResult<Option<Enrichment<'py>>> {
        if let Some(found) = known.get(device_id) {
            return Ok(found.clone());
        }
        let given = match enrich.call1((device_id,)) {
            Ok(given) => given,
            // A refusal (or a crash): the reference takes the device's items and says why.
            Err(error) if error.is_instance_of::<PyException>(enrich.py()) => {
                known.insert(device_id.to_owned(), None);
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        let found = if let Ok(json) = given.cast::<PyBytes>() {
            Some(Enrichment { json: json.clone(), avro: None })
        } else if let Ok((json, avro)) =
            given.extract::<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>()
        {
            Some(Enrichment { json, avro: Some(avro) })
        } else {
            None
        };
        known.insert(device_id.to_owned(), found.clone());
        Ok(found)
    }
}

/// The Redis sink's merge of a batch of curated envelopes into its device commands, packed.
#[pyclass(frozen)]
struct RedisMerge {
    inner: redis::Merge,
}

#[pymethods]
impl RedisMerge {
    #[new]
    #[pyo3(signature = (*, envelope_prefix, key_prefix))]
    fn new(envelope_prefix: Vec<u8>, key_prefix: String) -> Self {
        RedisMerge { inner: redis::Merge { envelope_prefix, key_prefix } }
    }

    /// `(packed commands, how many, devices)` for the curated envelopes `values`, or `None`
    /// to leave the batch to the Python reference.
    fn merge<'py>(
        &self,
        py: Python<'py>,
        values: Vec<Option<Bound<'py, PyBytes>>>,
    ) -> Option<(Bound<'py, PyBytes>, usize, usize)> {
        let values: Option<Vec<&[u8]>> =
            values.iter().map(|v| v.as_ref().map(|b| b.as_bytes())).collect();
        let packed = self.inner.merge(&values?)?;
        Some((PyBytes::new(py, &packed.bytes), packed.commands, packed.devices))
    }
}

/// A float as the curated JSON writes it (msgspec's notation), for tests; `None` for a value
/// the core leaves to the reference (halfway between two shortest forms).
#[pyfunction]
fn format_float(value: f64) -> PyResult<Option<String>> {
    if !value.is_finite() {
        return Err(pyo3::exceptions::PyValueError::new_err("not a finite float"));
    }
    let mut out = Vec::new();
    Ok(float::write(&mut out, value).then(|| String::from_utf8(out).expect("ASCII")))
}

#[pymodule]
fn fleetstream_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Core>()?;
    module.add_class::<RedisMerge>()?;
    module.add_function(wrap_pyfunction!(format_float, module)?)?;
    Ok(())
}
