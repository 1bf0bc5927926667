//! The hot path of iis-portscan in Rust: a batch of raw Kafka record values (W3CIISLog JSON objects)
//! decoded to the core's `IISEvent`, with the same answer as `streams.core.parse.single_event`.
//!
//! The Python core is the reference. This decoder only *claims* a record it can judge exactly: one JSON
//! object, strictly valid (grammar, UTF-8, escapes; no lone surrogate), whose 13 columns are present once
//! each with their usual types (strings, an integer port 0-65535), the group keys at most 256 characters
//! and TimeGenerated of the usual UTC form. Anything else - an escape in a key, a duplicate column, a
//! number it would have to convert, nesting past a small depth, an offset time - goes to the Python
//! function it was given (`single_event`) for that record: never a different answer, never a different
//! dead letter (the dead letter is made by the Python path from the same bytes).
//!
//! The GIL is released while a batch is scanned; the Python objects are built after, with it held.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::ffi;
use pyo3::types::{PyBytes, PyDict, PyInt, PyList, PySet, PyString, PyTuple, PyType};
use rustc_hash::FxHashMap;

mod delivery;

const MAX_KEY_CHARS: usize = 256; // streams.core.parse.MAX_KEY_CHARS
const MAX_DEPTH: usize = 32; // deeper skipped values: judged by Python
const N_COLUMNS: usize = 13;
const SPORT: usize = 4;
// A string of at most this many bytes is shared between events (one Python object per distinct value,
// its hash computed once); the memo is emptied when it holds MEMO_ENTRIES of them.
const MEMO_MAX_LEN: usize = 160;
const MEMO_ENTRIES: usize = 16_384;
// Batches smaller than this are scanned without releasing the GIL (releasing costs more than it frees).
const DETACH_MIN: usize = 16;
// Payloads scanned per release of the GIL.
const CHUNK: usize = 512;

/// The column index of a key, in IISEvent's positional order (sPort at 4).
#[inline]
fn column(key: &[u8]) -> Option<usize> {
    Some(match key {
        b"TimeGenerated" => 0,
        b"cIP" => 1,
        b"Computer" => 2,
        b"sIP" => 3,
        b"sPort" => 4,
        b"csMethod" => 5,
        b"csUriQuery" => 6,
        b"csUserName" => 7,
        b"sSiteName" => 8,
        b"csUserAgent" => 9,
        b"scStatus" => 10,
        b"scSubStatus" => 11,
        b"scWin32Status" => 12,
        _ => return None,
    })
}

/// A decoded string: a span of the payload (no escape in it) or its unescaped text.
enum Text {
    Span(usize, usize),
    Owned(String),
}

impl Text {
    #[inline]
    fn bytes<'a>(&'a self, payload: &'a [u8]) -> &'a [u8] {
        match self {
            Text::Span(a, b) => &payload[*a..*b],
            Text::Owned(s) => s.as_bytes(),
        }
    }
}

/// One claimed record: its event's fields (texts by column; the port's slot unused).
struct Parsed {
    time_ms: i64,
    port: u32,
    texts: [Text; N_COLUMNS],
}

/// Not judged here: the record goes to the Python path.
struct Unsure;

type Judged<T> = Result<T, Unsure>;

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

#[inline]
fn hex(c: u8) -> Judged<u32> {
    match c {
        b'0'..=b'9' => Ok((c - b'0') as u32),
        b'a'..=b'f' => Ok((c - b'a' + 10) as u32),
        b'A'..=b'F' => Ok((c - b'A' + 10) as u32),
        _ => Err(Unsure),
    }
}

impl<'a> Scan<'a> {
    #[inline]
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Judged<u8> {
        self.b.get(self.i).copied().ok_or(Unsure)
    }

    #[inline]
    fn expect(&mut self, c: u8) -> Judged<()> {
        if self.peek()? == c {
            self.i += 1;
            Ok(())
        } else {
            Err(Unsure)
        }
    }

    fn hex4(&mut self) -> Judged<u32> {
        let b = self.b;
        if self.i + 4 > b.len() {
            return Err(Unsure);
        }
        let v = (hex(b[self.i])? << 12)
            | (hex(b[self.i + 1])? << 8)
            | (hex(b[self.i + 2])? << 4)
            | hex(b[self.i + 3])?;
        self.i += 4;
        Ok(v)
    }

    /// A JSON string at the cursor (which is on its opening quote): its text, strictly validated.
    fn string(&mut self) -> Judged<Text> {
        self.expect(b'"')?;
        let b = self.b;
        let start = self.i;
        let mut i = start;
        // fast scan: up to the closing quote, or the first escape
        i += memchr::memchr2(b'"', b'\\', &b[i..]).ok_or(Unsure)?;
        let span = &b[start..i];
        if span.iter().fold(false, |bad, &c| bad | (c < 0x20)) {
            return Err(Unsure); // a raw control character: not JSON
        }
        if b[i] == b'"' {
            if !span.is_ascii() {
                std::str::from_utf8(span).map_err(|_| Unsure)?;
            }
            self.i = i + 1;
            return Ok(Text::Span(start, i));
        }
        // with escapes: unescape into an owned string
        let mut out: Vec<u8> = Vec::with_capacity(i - start + 16);
        let mut seg = start;
        loop {
            let c = *b.get(i).ok_or(Unsure)?;
            if c == b'"' {
                out.extend_from_slice(&b[seg..i]);
                self.i = i + 1;
                let s = String::from_utf8(out).map_err(|_| Unsure)?;
                return Ok(Text::Owned(s));
            }
            if c < 0x20 {
                return Err(Unsure);
            }
            if c != b'\\' {
                i += 1;
                continue;
            }
            // validate the raw segment on its own: an escape must not complete a broken sequence
            std::str::from_utf8(&b[seg..i]).map_err(|_| Unsure)?;
            out.extend_from_slice(&b[seg..i]);
            let e = *b.get(i + 1).ok_or(Unsure)?;
            i += 2;
            match e {
                b'"' => out.push(b'"'),
                b'\\' => out.push(b'\\'),
                b'/' => out.push(b'/'),
                b'b' => out.push(0x08),
                b'f' => out.push(0x0c),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'u' => {
                    self.i = i;
                    let u = self.hex4()?;
                    let code = if (0xD800..0xDC00).contains(&u) {
                        // a high surrogate: only with its low half right after
                        if b.get(self.i) != Some(&b'\\') || b.get(self.i + 1) != Some(&b'u') {
                            return Err(Unsure);
                        }
                        self.i += 2;
                        let lo = self.hex4()?;
                        if !(0xDC00..0xE000).contains(&lo) {
                            return Err(Unsure);
                        }
                        0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)
                    } else if (0xDC00..0xE000).contains(&u) {
                        return Err(Unsure); // a lone low surrogate
                    } else {
                        u
                    };
                    let ch = char::from_u32(code).ok_or(Unsure)?;
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    i = self.i;
                }
                _ => return Err(Unsure),
            }
            seg = i;
        }
    }

    /// A JSON number that is skipped: strict grammar (msgspec skips any such number; a very long one is
    /// left to Python all the same).
    fn skip_number(&mut self) -> Judged<()> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let run = |mut i: usize| {
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
            i
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = run(i),
            _ => return Err(Unsure),
        }
        if b.get(i) == Some(&b'.') {
            let after = run(i + 1);
            if after == i + 1 {
                return Err(Unsure);
            }
            i = after;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let after = run(i);
            if after == i {
                return Err(Unsure);
            }
            i = after;
        }
        if i - start > 1000 {
            return Err(Unsure);
        }
        self.i = i;
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Judged<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Unsure)
        }
    }

    /// Any JSON value that is not one of the columns: validated, not kept.
    fn skip_value(&mut self, depth: usize) -> Judged<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => {
                if depth >= MAX_DEPTH {
                    return Err(Unsure);
                }
                self.i += 1;
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.string()?;
                    self.ws();
                    self.expect(b':')?;
                    self.ws();
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.peek()? {
                        b',' => {
                            self.i += 1;
                            self.ws();
                        }
                        b'}' => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(Unsure),
                    }
                }
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return Err(Unsure);
                }
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.peek()? {
                        b',' => {
                            self.i += 1;
                            self.ws();
                        }
                        b']' => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(Unsure),
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.skip_number(),
            _ => Err(Unsure),
        }
    }

    /// sPort: a plain JSON integer 0-65535 (no sign, fraction or exponent: Python judges those).
    fn port(&mut self) -> Judged<u32> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let mut v: u32 = 0;
        while let Some(&c) = b.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            v = v * 10 + (c - b'0') as u32;
            i += 1;
            if i - start > 5 {
                return Err(Unsure);
            }
        }
        let n = i - start;
        if n == 0 || (n > 1 && b[start] == b'0') || v > 65535 {
            return Err(Unsure);
        }
        if matches!(b.get(i), Some(b'.' | b'e' | b'E')) {
            return Err(Unsure);
        }
        self.i = i;
        Ok(v)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

#[inline]
fn digits(t: &[u8], a: usize, b: usize) -> Judged<i64> {
    let mut v = 0i64;
    for &c in &t[a..b] {
        if !c.is_ascii_digit() {
            return Err(Unsure);
        }
        v = v * 10 + (c - b'0') as i64;
    }
    Ok(v)
}

/// TimeGenerated of the form `YYYY-MM-DD[Tt ]HH:MM:SS[(.|,)digits][Z|z]` from 1970 on, as
/// `streams.core.timefmt.parse_iso_ms` reads it (floored to ms); any other form is Python's to judge.
fn parse_time(t: &[u8]) -> Judged<i64> {
    if t.len() < 19
        || t[4] != b'-'
        || t[7] != b'-'
        || !matches!(t[10], b'T' | b't' | b' ')
        || t[13] != b':'
        || t[16] != b':'
    {
        return Err(Unsure);
    }
    let (y, mo, d) = (digits(t, 0, 4)?, digits(t, 5, 7)?, digits(t, 8, 10)?);
    let (h, mi, s) = (digits(t, 11, 13)?, digits(t, 14, 16)?, digits(t, 17, 19)?);
    if y < 1970 || !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 59 {
        return Err(Unsure);
    }
    let mut i = 19;
    let mut frac = 0i64;
    if i < t.len() && (t[i] == b'.' || t[i] == b',') {
        i += 1;
        let start = i;
        while i < t.len() && t[i].is_ascii_digit() {
            if i - start < 3 {
                frac = frac * 10 + (t[i] - b'0') as i64;
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return Err(Unsure);
        }
        for _ in n..3 {
            frac *= 10;
        }
    }
    match &t[i..] {
        b"" | b"Z" | b"z" => {}
        _ => return Err(Unsure),
    }
    Ok(days_from_civil(y, mo, d) * 86_400_000 + ((h * 60 + mi) * 60 + s) * 1000 + frac)
}

/// Characters (code points) of valid UTF-8.
#[inline]
fn chars(s: &[u8]) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.iter().filter(|&&c| (c & 0xC0) != 0x80).count()
    }
}

/// One payload judged: the event's fields, or Unsure.
fn parse(payload: &[u8]) -> Judged<Parsed> {
    let mut sc = Scan { b: payload, i: 0 };
    let mut seen: u16 = 0;
    let mut port: u32 = 0;
    const EMPTY: Text = Text::Span(0, 0);
    let mut texts: [Text; N_COLUMNS] = [EMPTY; N_COLUMNS];
    sc.ws();
    sc.expect(b'{')?;
    sc.ws();
    loop {
        let key = sc.string()?;
        let col = match key {
            Text::Span(a, b) => column(&payload[a..b]),
            // An escaped key: whether it names a column is Python's to judge when it would (an escaped
            // spelling of a column name); any other is unknown however it is read.
            Text::Owned(k) => match column(k.as_bytes()) {
                Some(_) => return Err(Unsure),
                None => None,
            },
        };
        sc.ws();
        sc.expect(b':')?;
        sc.ws();
        match col {
            Some(c) => {
                if seen & (1 << c) != 0 {
                    return Err(Unsure); // a column given twice
                }
                seen |= 1 << c;
                if c == SPORT {
                    port = sc.port()?;
                } else {
                    if sc.peek()? != b'"' {
                        return Err(Unsure); // null, a number where a string belongs: Python's rules
                    }
                    texts[c] = sc.string()?;
                }
            }
            None => sc.skip_value(1)?,
        }
        sc.ws();
        match sc.peek()? {
            b',' => {
                sc.i += 1;
                sc.ws();
            }
            b'}' => {
                sc.i += 1;
                break;
            }
            _ => return Err(Unsure),
        }
    }
    sc.ws();
    if sc.i != payload.len() || seen != (1 << N_COLUMNS) - 1 {
        return Err(Unsure);
    }
    for c in 1..=3 {
        let s = texts[c].bytes(payload);
        if s.len() > MAX_KEY_CHARS && chars(s) > MAX_KEY_CHARS {
            return Err(Unsure);
        }
    }
    let time_ms = parse_time(texts[0].bytes(payload))?;
    Ok(Parsed { time_ms, port, texts })
}

/// Where an event's fields live: the columns', and the tenant's when the class has one.
#[derive(Clone, Copy)]
struct Slots {
    columns: [isize; N_COLUMNS],
    tenant: Option<isize>,
}

const TENANT_FIELD: &str = "tenant";

// IISEvent's fields, in order (its __match_args__), the optional trailing tenant aside.
const FIELDS: [&str; N_COLUMNS] = [
    "time_ms",
    "cIP",
    "Computer",
    "sIP",
    "sPort",
    "csMethod",
    "csUriQuery",
    "csUserName",
    "sSiteName",
    "csUserAgent",
    "scStatus",
    "scSubStatus",
    "scWin32Status",
];

/// Where a slots dataclass keeps each field (the offsets of its member descriptors), when it is exactly
/// what the generated __init__ would fill: then an event is allocated and its slots set directly, which
/// is what that __init__ does, without the Python call. None: the class is called instead.
fn slot_offsets(py: Python<'_>, event: &Bound<'_, PyAny>) -> PyResult<Option<Slots>> {
    let member_type = py.import("types")?.getattr("MemberDescriptorType")?;
    let Ok(cls) = event.cast::<PyType>() else { return Ok(None) };
    let names: Vec<String> = match cls.getattr("__match_args__").and_then(|m| m.extract()) {
        Ok(names) => names,
        Err(_) => return Ok(None),
    };
    // The W3CIISLog columns, then optionally the tenant (core.tenant), which the fast path sets to ""
    // (its default: a configured tenant field never takes this path; see streams.kafka.messages).
    let tenant = names.len() == N_COLUMNS + 1 && names[N_COLUMNS] == TENANT_FIELD;
    if names[..names.len().min(N_COLUMNS)] != FIELDS[..] || !(names.len() == N_COLUMNS || tenant)
        || cls.hasattr("__post_init__")?
    {
        return Ok(None);
    }
    let dict = cls.getattr("__dict__")?;
    let basic = unsafe { (*cls.as_type_ptr()).tp_basicsize };
    let offset_of = |name: &str| -> PyResult<Option<isize>> {
        let descr = dict.get_item(name)?;
        if !descr.get_type().is(&member_type) {
            return Ok(None);
        }
        let member = unsafe { (*(descr.as_ptr() as *mut ffi::PyMemberDescrObject)).d_member as *mut ffi::PyMemberDef };
        let (code, offset, flags) = unsafe { ((*member).type_code, (*member).offset, (*member).flags) };
        if code != ffi::Py_T_OBJECT_EX || flags != 0 || offset < std::mem::size_of::<ffi::PyObject>() as isize
            || offset + std::mem::size_of::<*mut ffi::PyObject>() as isize > basic
        {
            return Ok(None);
        }
        Ok(Some(offset))
    };
    let mut offsets = [0isize; N_COLUMNS];
    for (n, name) in FIELDS.iter().enumerate() {
        match offset_of(name)? {
            Some(offset) => offsets[n] = offset,
            None => return Ok(None),
        }
    }
    let tenant_offset = if tenant {
        match offset_of(TENANT_FIELD)? {
            Some(offset) => Some(offset),
            None => return Ok(None),
        }
    } else {
        None
    };
    Ok(Some(Slots { columns: offsets, tenant: tenant_offset }))
}

/// The decoder of one consumer: the event class, the Python path for records it does not judge, and
/// the memo of shared strings.
#[pyclass(module = "streams._native", unsendable)]
struct Decoder {
    slots: Option<Slots>,
    event: Py<PyAny>,
    fallback: Py<PyAny>,
    memo: FxHashMap<Box<[u8]>, Py<PyString>>,
    #[pyo3(get)]
    claimed: u64,
    #[pyo3(get)]
    passed: u64,
}

impl Decoder {
    fn text<'py>(&mut self, py: Python<'py>, s: &[u8]) -> Bound<'py, PyString> {
        // valid UTF-8: checked while scanning
        let text = unsafe { std::str::from_utf8_unchecked(s) };
        if s.len() > MEMO_MAX_LEN {
            return PyString::new(py, text);
        }
        if let Some(found) = self.memo.get(s) {
            return found.bind(py).clone();
        }
        let made = PyString::new(py, text);
        if self.memo.len() >= MEMO_ENTRIES {
            self.memo.clear();
        }
        self.memo.insert(s.into(), made.clone().unbind());
        made
    }

    fn build<'py>(&mut self, py: Python<'py>, payload: &[u8], p: &Parsed) -> PyResult<Bound<'py, PyAny>> {
        let mut args: Vec<Bound<'py, PyAny>> = Vec::with_capacity(N_COLUMNS);
        args.push(p.time_ms.into_pyobject(py)?.into_any());
        for c in 1..N_COLUMNS {
            if c == SPORT {
                args.push(p.port.into_pyobject(py)?.into_any());
            } else {
                args.push(self.text(py, p.texts[c].bytes(payload)).into_any());
            }
        }
        if let Some(Slots { columns: offsets, tenant }) = self.slots {
            let event = self.event.bind(py);
            unsafe {
                let tp = event.as_ptr() as *mut ffi::PyTypeObject;
                let alloc = (*tp).tp_alloc.unwrap_or(ffi::PyType_GenericAlloc);
                let obj = alloc(tp, 0);
                if obj.is_null() {
                    return Err(PyErr::fetch(py));
                }
                for (value, offset) in args.into_iter().zip(offsets) {
                    let slot = (obj as *mut u8).offset(offset) as *mut *mut ffi::PyObject;
                    *slot = value.into_ptr(); // the slot takes the reference (a fresh object's slots are NULL)
                }
                if let Some(offset) = tenant {
                    let slot = (obj as *mut u8).offset(offset) as *mut *mut ffi::PyObject;
                    *slot = PyString::new(py, "").into_ptr(); // the field's default: no tenant
                }
                return Ok(Bound::from_owned_ptr(py, obj));
            }
        }
        let tuple = PyTuple::new(py, args)?;
        self.event.bind(py).call1(tuple)
    }
}

#[pymethods]
impl Decoder {
    #[new]
    #[pyo3(signature = (event, fallback, direct = true))]
    fn new(py: Python<'_>, event: Py<PyAny>, fallback: Py<PyAny>, direct: bool) -> PyResult<Self> {
        let slots = if direct { slot_offsets(py, event.bind(py))? } else { None };
        Ok(Decoder { slots, event, fallback, memo: FxHashMap::default(), claimed: 0, passed: 0 })
    }

    /// Whether events are built by setting their slots (else by calling the class).
    #[getter]
    fn direct(&self) -> bool {
        self.slots.is_some()
    }

    /// The event of each value (`fallback(value)` for every one not judged here): a list as long as
    /// `values`, equal to `[fallback(v) for v in values]`.
    fn decode<'py>(&mut self, py: Python<'py>, values: &Bound<'py, PyList>) -> PyResult<Bound<'py, PyList>> {
        let items: Vec<Bound<'py, PyAny>> = values.iter().collect();
        let slices: Vec<Option<&[u8]>> = items
            .iter()
            .map(|v| v.cast_exact::<PyBytes>().ok().map(|b| b.as_bytes()))
            .collect();
        let scan = |slices: &[Option<&[u8]>]| -> Vec<Judged<Parsed>> {
            slices.iter().map(|s| s.map_or(Err(Unsure), parse)).collect()
        };
        let out = PyList::empty(py);
        let fallback = self.fallback.clone_ref(py);
        // In chunks: the scanned fields of a chunk are held until its events are built (bounded memory).
        for start in (0..slices.len()).step_by(CHUNK) {
            let chunk = &slices[start..slices.len().min(start + CHUNK)];
            let parsed = if chunk.len() >= DETACH_MIN { py.detach(|| scan(chunk)) } else { scan(chunk) };
            for (j, judged) in parsed.iter().enumerate() {
                match (judged, chunk[j]) {
                    (Ok(p), Some(payload)) => {
                        self.claimed += 1;
                        out.append(self.build(py, payload, p)?)?;
                    }
                    _ => {
                        self.passed += 1;
                        out.append(fallback.bind(py).call1((&items[start + j],))?)?;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Whether this decoder claims `value` (for tests: a claimed value never reaches the fallback).
    fn claims(&self, value: &Bound<'_, PyAny>) -> PyResult<bool> {
        let bytes = value.cast_exact::<PyBytes>().map_err(|_| PyTypeError::new_err("bytes expected"))?;
        Ok(parse(bytes.as_bytes()).is_ok())
    }
}


// ---------------------------------------------------------------------------------- record encoding

/// A str as UTF-8 bytes appended JSON-escaped exactly as orjson writes it: `"` `\` and the control
/// characters escaped (\b \t \n \f \r short, the others \u00xx), everything else raw.
fn put_json_str(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut start = 0;
    for (i, &c) in s.iter().enumerate() {
        if c >= 0x20 && c != b'"' && c != b'\\' {
            continue;
        }
        out.extend_from_slice(&s[start..i]);
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

fn put_int(out: &mut Vec<u8>, v: i128) {
    let mut buf = [0u8; 40];
    let mut i = buf.len();
    let neg = v < 0;
    let mut u = v.unsigned_abs() as u64; // within orjson's range: |v| < 2**64 (int_of)
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    out.extend_from_slice(&buf[i..]);
}

/// An exact int within orjson's range (i64 or u64), else Unsure.
fn int_of(v: &Bound<'_, PyAny>) -> Judged<i128> {
    if !v.is_exact_instance_of::<PyInt>() {
        return Err(Unsure);
    }
    if let Ok(x) = v.extract::<i64>() {
        return Ok(x as i128);
    }
    let x: i128 = v.extract().map_err(|_| Unsure)?;
    if x < i64::MIN as i128 || x > u64::MAX as i128 {
        return Err(Unsure);
    }
    Ok(x)
}

/// The UTF-8 of an exact str: borrowed from a compact ASCII one, else an owned copy (no UTF-8 cache
/// left on the str: windows keep their values a long time).
fn str_of<'a>(v: &'a Bound<'_, PyAny>) -> Judged<std::borrow::Cow<'a, [u8]>> {
    let s = v.cast_exact::<PyString>().map_err(|_| Unsure)?;
    unsafe {
        let ptr = s.as_ptr();
        if ffi::PyUnicode_IS_COMPACT_ASCII(ptr) != 0 {
            let n = ffi::PyUnicode_GET_LENGTH(ptr) as usize;
            let data = ffi::PyUnicode_DATA(ptr) as *const u8;
            return Ok(std::borrow::Cow::Borrowed(std::slice::from_raw_parts(data, n)));
        }
    }
    let bytes = s.encode_utf8().map_err(|_| Unsure)?; // a lone surrogate: orjson refuses it, Python decides
    Ok(std::borrow::Cow::Owned(bytes.as_bytes().to_vec()))
}

/// A string slot as stored: one value, a tuple's values in its (sorted) order, or a set's sorted (code
/// point order = UTF-8 byte order).
fn put_str_slot(out: &mut Vec<u8>, slot: &Bound<'_, PyAny>, cap: usize) -> Judged<()> {
    if slot.is_exact_instance_of::<PyString>() {
        put_json_str(out, &str_of(slot)?);
        return Ok(());
    }
    if let Ok(t) = slot.cast_exact::<PyTuple>() {
        out.push(b'[');
        for (i, v) in t.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            put_json_str(out, &str_of(&v)?);
        }
        out.push(b']');
        return Ok(());
    }
    let set = slot.cast_exact::<PySet>().map_err(|_| Unsure)?;
    if cap > 0 && set.len() > cap {
        return Err(Unsure); // to_bytes trims it first: Python's to do
    }
    let items: Vec<Bound<'_, PyAny>> = set.iter().collect();
    let mut values: Vec<std::borrow::Cow<'_, [u8]>> = Vec::with_capacity(items.len());
    for v in &items {
        values.push(str_of(v)?);
    }
    values.sort_unstable();
    out.push(b'[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        put_json_str(out, v);
    }
    out.push(b']');
    Ok(())
}

const BITMAP_PORTS: usize = 1024; // streams.core.aggregate._BITMAP_PORTS: a bitmap past it (Python's)

/// `WindowRecord._encode()` (orjson of {"v","n","f","l","p","s","o","r","c"}), or Unsure.
fn encode_record<'py>(py: Python<'py>, rec: &Bound<'py, PyAny>, cap: usize) -> Judged<Vec<u8>> {
    let get = |name: &Bound<'py, PyString>| -> Judged<Bound<'py, PyAny>> { rec.getattr(name).map_err(|_| Unsure) };
    let count = int_of(&get(pyo3::intern!(py, "count"))?)?;
    let first = int_of(&get(pyo3::intern!(py, "first_ms"))?)?;
    let last = int_of(&get(pyo3::intern!(py, "last_ms"))?)?;
    let ports = get(pyo3::intern!(py, "_ports"))?;
    let sets = get(pyo3::intern!(py, "_sets"))?;
    let applied = get(pyo3::intern!(py, "_applied"))?;
    let sent = int_of(&get(pyo3::intern!(py, "alerts_sent"))?)?;
    let closed = get(pyo3::intern!(py, "closed"))?;
    let closed = if closed.is(&pyo3::types::PyBool::new(py, true)) {
        true
    } else if closed.is(&pyo3::types::PyBool::new(py, false)) {
        false
    } else {
        return Err(Unsure);
    };
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"{\"v\":2,\"n\":");
    put_int(&mut out, count);
    out.extend_from_slice(b",\"f\":");
    put_int(&mut out, first);
    out.extend_from_slice(b",\"l\":");
    put_int(&mut out, last);
    out.extend_from_slice(b",\"p\":");
    if ports.is_none() {
        out.extend_from_slice(b"null");
    } else if ports.is_exact_instance_of::<PyInt>() {
        put_int(&mut out, int_of(&ports)?);
    } else {
        let mut values: Vec<i128> = Vec::new();
        if let Ok(t) = ports.cast_exact::<PyTuple>() {
            for v in t.iter() {
                values.push(int_of(&v)?); // in its (sorted) order, as stored
            }
        } else if let Ok(set) = ports.cast_exact::<PySet>() {
            if set.len() > BITMAP_PORTS {
                return Err(Unsure);
            }
            for v in set.iter() {
                values.push(int_of(&v)?);
            }
            values.sort_unstable();
        } else {
            return Err(Unsure);
        }
        out.push(b'[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            put_int(&mut out, *v);
        }
        out.push(b']');
    }
    out.extend_from_slice(b",\"s\":");
    if sets.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(t) = sets.cast_exact::<PyTuple>() {
        out.push(b'[');
        for (i, v) in t.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            put_json_str(&mut out, &str_of(&v)?); // a one-request window: one value per set
        }
        out.push(b']');
    } else if let Ok(list) = sets.cast_exact::<PyList>() {
        out.push(b'[');
        for (i, slot) in list.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            put_str_slot(&mut out, &slot, cap)?;
        }
        out.push(b']');
    } else {
        return Err(Unsure);
    }
    out.extend_from_slice(b",\"o\":");
    if applied.is_none() {
        out.extend_from_slice(b"[]");
    } else if applied.is_exact_instance_of::<PyInt>() {
        let pos: u128 = applied.extract().map_err(|_| Unsure)?;
        out.push(b'[');
        out.push(b'[');
        put_int(&mut out, int_of(&(pos >> 64).into_pyobject(py).map_err(|_| Unsure)?.into_any())?);
        out.push(b',');
        put_int(&mut out, (pos & u64::MAX as u128) as i128);
        out.extend_from_slice(b"]]");
    } else if let Ok(d) = applied.cast_exact::<PyDict>() {
        out.push(b'[');
        for (i, (k, v)) in d.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'[');
            put_int(&mut out, int_of(&k)?);
            out.push(b',');
            put_int(&mut out, int_of(&v)?);
            out.push(b']');
        }
        out.push(b']');
    } else {
        return Err(Unsure);
    }
    out.extend_from_slice(b",\"r\":");
    put_int(&mut out, sent);
    out.extend_from_slice(if closed { b",\"c\":true}" } else { b",\"c\":false}" });
    Ok(out)
}

/// The stored bytes of each record of `records` (key -> WindowRecord), in order: what `to_bytes(rule)`
/// gives. A record whose encoding needs Python's rules (a set to trim past `cap`, a port bitmap, a value
/// orjson would refuse, bytes past `max_bytes`: shrinking) goes to `fallback(record)`.
#[pyfunction]
fn encode_records<'py>(
    py: Python<'py>,
    records: &Bound<'py, PyDict>,
    cap: usize,
    max_bytes: usize,
    fallback: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for (key, rec) in records.iter() {
        match encode_record(py, &rec, cap) {
            Ok(data) if data.len() <= max_bytes => out.set_item(key, PyBytes::new(py, &data))?,
            _ => out.set_item(key, fallback.call1((&rec,))?)?,
        }
    }
    Ok(out)
}


// ---------------------------------------------------------------------------------- the engine's fold

/// Where a slots class keeps `name` (its member descriptor's offset, found along the MRO), when the slot
/// is a plain object slot: None otherwise.
fn member_offset(py: Python<'_>, cls: &Bound<'_, PyType>, name: &str) -> PyResult<Option<isize>> {
    let member_type = py.import("types")?.getattr("MemberDescriptorType")?;
    let Ok(descr) = cls.getattr(name) else { return Ok(None) };
    if !descr.get_type().is(&member_type) {
        return Ok(None);
    }
    let basic = unsafe { (*cls.as_type_ptr()).tp_basicsize };
    let member = unsafe { (*(descr.as_ptr() as *mut ffi::PyMemberDescrObject)).d_member as *mut ffi::PyMemberDef };
    let (code, offset, flags) = unsafe { ((*member).type_code, (*member).offset, (*member).flags) };
    if code != ffi::Py_T_OBJECT_EX
        || flags != 0
        || offset < std::mem::size_of::<ffi::PyObject>() as isize
        || offset + std::mem::size_of::<*mut ffi::PyObject>() as isize > basic
    {
        return Ok(None);
    }
    Ok(Some(offset))
}

/// A slot's object (borrowed; NULL when unset).
#[inline]
unsafe fn get_slot(obj: *mut ffi::PyObject, offset: isize) -> *mut ffi::PyObject {
    *((obj as *mut u8).offset(offset) as *mut *mut ffi::PyObject)
}

/// Set a slot to an owned reference, releasing the one it held.
#[inline]
unsafe fn put_slot(obj: *mut ffi::PyObject, offset: isize, value: *mut ffi::PyObject) {
    let at = (obj as *mut u8).offset(offset) as *mut *mut ffi::PyObject;
    let old = *at;
    *at = value;
    if !old.is_null() {
        ffi::Py_DECREF(old);
    }
}

/// An exact int that fits an i64 (borrowed object), else None.
#[inline]
unsafe fn small_int(obj: *mut ffi::PyObject) -> Option<i64> {
    if obj.is_null() || ffi::PyLong_CheckExact(obj) == 0 {
        return None;
    }
    let mut overflow: std::os::raw::c_int = 0;
    let v = ffi::PyLong_AsLongLongAndOverflow(obj, &mut overflow);
    if overflow != 0 || (v == -1 && !ffi::PyErr_Occurred().is_null()) {
        ffi::PyErr_Clear();
        return None;
    }
    Some(v)
}

// The event's columns the engine reads, by IISEvent's field names.
const TIME: usize = 0;
// Enricher.values' memo key: the request's columns in this order.
const VALUE_COLUMNS: [usize; 8] = [7, 6, 8, 9, 5, 10, 11, 12];

/// The threshold of a key as a Python object: `threshold`, or `of_key(key)`.
fn of_key_or<'py>(
    py: Python<'py>,
    threshold: Option<i64>,
    of_key: &Bound<'py, PyAny>,
    key: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    match threshold {
        Some(t) => Ok(t.into_pyobject(py)?.into_any()),
        None => of_key.call1((key,)),
    }
}

/// WindowRecord's slots.
struct RecSlots {
    count: isize,
    first: isize,
    last: isize,
    ports: isize,
    sets: isize,
    applied: isize,
    sent: isize,
    closed: isize,
}

/// The per-event loop of `core.engine.PartitionEngine` (`plan`'s keys, `_apply`'s common branches) over
/// the same Python objects; every other branch is the Python engine's own (see streams.core.native).
#[pyclass(module = "streams._native", unsendable)]
struct Fold {
    event: Py<PyType>,
    record: Py<PyType>,
    ev: [isize; N_COLUMNS],
    tenant: isize,
    rec: RecSlots,
    #[pyo3(get, set)]
    untrack: bool,
}

impl Fold {
    /// The events of a batch of (position, event) when every one is an IISEvent with an i64 time and an
    /// int position: (position, event, time), borrowed. None: the Python engine takes the batch.
    fn items<'py>(&self, batch: &Bound<'py, PyAny>) -> Option<Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>, i64)>> {
        let list = batch.cast_exact::<PyList>().ok()?;
        let tp = self.event.as_ptr() as *mut ffi::PyTypeObject;
        let mut out = Vec::with_capacity(list.len());
        for item in list.iter() {
            let pair = item.cast_exact::<PyTuple>().ok()?;
            if pair.len() != 2 {
                return None;
            }
            let offset = pair.get_item(0).ok()?;
            let ev = pair.get_item(1).ok()?;
            if !offset.is_exact_instance_of::<PyInt>() || unsafe { ffi::Py_TYPE(ev.as_ptr()) } != tp {
                return None;
            }
            let t = unsafe { small_int(get_slot(ev.as_ptr(), self.ev[TIME]))? };
            out.push((offset, ev, t));
        }
        Some(out)
    }

    /// The store key of an event: the start's 13-digit prefix + orjson.dumps(((tenant,) cIP, Computer,
    /// sIP)). None: a value orjson would refuse (a lone surrogate) or not a str: Python's to do.
    fn key(&self, ev: &Bound<'_, PyAny>, start: i64, buf: &mut Vec<u8>) -> Option<()> {
        use std::io::Write;
        buf.clear();
        write!(buf, "{:013}", start).ok()?;
        buf.push(b'[');
        let py = ev.py();
        let column = |offset: isize| -> Option<Bound<'_, PyAny>> {
            let obj = unsafe { get_slot(ev.as_ptr(), offset) };
            if obj.is_null() {
                return None;
            }
            Some(unsafe { Bound::from_borrowed_ptr(py, obj) })
        };
        let tenant = column(self.tenant)?;
        let tenant_text = str_of(&tenant).ok()?;
        let mut first = true;
        if !tenant_text.is_empty() {
            put_json_str(buf, &tenant_text);
            first = false;
        }
        for c in 1..=3 {
            if !first {
                buf.push(b',');
            }
            first = false;
            let v = column(self.ev[c])?;
            put_json_str(buf, &str_of(&v).ok()?);
        }
        buf.push(b']');
        Some(())
    }

    /// `Enricher.values(ev)`: its memo looked up here with the same key, the method called on a miss.
    fn values<'py>(
        &self,
        ev: &Bound<'py, PyAny>,
        memo: &Bound<'py, PyDict>,
        values: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = ev.py();
        let mut parts: Vec<Bound<'py, PyAny>> = Vec::with_capacity(8);
        for c in VALUE_COLUMNS {
            let obj = unsafe { get_slot(ev.as_ptr(), self.ev[c]) };
            if obj.is_null() {
                return values.call1((ev,));
            }
            parts.push(unsafe { Bound::from_borrowed_ptr(py, obj) });
        }
        let key = PyTuple::new(py, parts)?;
        if let Some(found) = memo.get_item(&key)? {
            if !found.is_none() {
                return Ok(found);
            }
        }
        values.call1((ev,))
    }

    /// `rec.port_count(cap)` from the ports slot (None: not a slot of the usual forms).
    fn port_count(&self, rec: &Bound<'_, PyAny>, cap: i64) -> PyResult<Option<i64>> {
        let ports = unsafe { get_slot(rec.as_ptr(), self.rec.ports) };
        if ports.is_null() || unsafe { ffi::Py_TYPE(rec.as_ptr()) } != self.record.as_ptr() as *mut ffi::PyTypeObject {
            return Ok(None);
        }
        let n = unsafe {
            if ports == ffi::Py_None() {
                0
            } else if ffi::PyLong_CheckExact(ports) != 0 {
                1
            } else if ffi::PyTuple_CheckExact(ports) != 0 {
                ffi::PyTuple_GET_SIZE(ports) as i64
            } else if ffi::PySet_CheckExact(ports) != 0 {
                ffi::PySet_GET_SIZE(ports) as i64
            } else {
                return Ok(None);
            }
        };
        Ok(Some(if cap != 0 { n.min(cap) } else { n }))
    }

    /// `rec.reaches(threshold, cap)` (the threshold `of_key(key)` when None); None: Python's to say.
    fn reaches(
        &self,
        rec: &Bound<'_, PyAny>,
        threshold: Option<i64>,
        of_key: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
        cap: i64,
    ) -> PyResult<Option<bool>> {
        let ports = unsafe { get_slot(rec.as_ptr(), self.rec.ports) };
        if ports == unsafe { ffi::Py_None() } {
            return Ok(Some(false));
        }
        let Some(n) = self.port_count(rec, cap)? else { return Ok(None) };
        let limit: i64 = match threshold {
            Some(t) => t,
            None => match of_key.call1((key,))?.extract() {
                Ok(t) => t,
                Err(_) => return Ok(None),
            },
        };
        Ok(Some(n >= limit))
    }

    /// `WindowRecord.first(t, port, values, offset, closed)`: its slots set directly.
    fn first<'py>(
        &self,
        py: Python<'py>,
        time: *mut ffi::PyObject,
        port: *mut ffi::PyObject,
        values: &Bound<'py, PyAny>,
        offset: &Bound<'py, PyAny>,
        closed: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        unsafe {
            let tp = self.record.as_ptr() as *mut ffi::PyTypeObject;
            let alloc = (*tp).tp_alloc.unwrap_or(ffi::PyType_GenericAlloc);
            let obj = alloc(tp, 0);
            if obj.is_null() {
                return Err(PyErr::fetch(py));
            }
            let r = &self.rec;
            put_slot(obj, r.count, ffi::PyLong_FromLongLong(1));
            ffi::Py_INCREF(time);
            put_slot(obj, r.first, time);
            ffi::Py_INCREF(time);
            put_slot(obj, r.last, time);
            ffi::Py_INCREF(port);
            put_slot(obj, r.ports, port);
            put_slot(obj, r.sets, values.clone().into_ptr());
            put_slot(obj, r.applied, offset.clone().into_ptr());
            put_slot(obj, r.sent, ffi::PyLong_FromLongLong(0));
            let flag = if closed { ffi::Py_True() } else { ffi::Py_False() };
            ffi::Py_INCREF(flag);
            put_slot(obj, r.closed, flag);
            if self.untrack {
                // A record holds ints, strs and containers of them: it is never part of a reference
                // cycle, so the collector need not traverse it (hundreds of thousands live at once).
                ffi::PyObject_GC_UnTrack(obj as *mut std::ffi::c_void);
            }
            Ok(Bound::from_owned_ptr(py, obj))
        }
    }

    /// `rec.first_time(offset)`: the one-source case here, the others by the method.
    fn first_time(&self, rec: &Bound<'_, PyAny>, offset: &Bound<'_, PyAny>) -> PyResult<bool> {
        let applied = unsafe { get_slot(rec.as_ptr(), self.rec.applied) };
        if !applied.is_null() && unsafe { ffi::PyLong_CheckExact(applied) } != 0 {
            let a: Option<u128> = unsafe { Bound::from_borrowed_ptr(rec.py(), applied) }.extract().ok();
            let o: Option<u128> = offset.extract().ok();
            if let (Some(a), Some(o)) = (a, o) {
                if a >> 64 == o >> 64 {
                    if o <= a {
                        return Ok(false);
                    }
                    unsafe { put_slot(rec.as_ptr(), self.rec.applied, offset.clone().into_ptr()) };
                    return Ok(true);
                }
            }
        }
        rec.call_method1(pyo3::intern!(rec.py(), "first_time"), (offset,))?.is_truthy()
    }

    /// `rec.add(t, port, values, cap)`: its fast exits here (the same port or none, the very tuple of
    /// values), else the method.
    fn add<'py>(
        &self,
        rec: &Bound<'py, PyAny>,
        t: i64,
        time: *mut ffi::PyObject,
        port: *mut ffi::PyObject,
        values: &Bound<'py, PyAny>,
        cap: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        let r = &self.rec;
        let o = rec.as_ptr();
        unsafe {
            let sets = get_slot(o, r.sets);
            let ports = get_slot(o, r.ports);
            let count = small_int(get_slot(o, r.count));
            let first = small_int(get_slot(o, r.first));
            let last = small_int(get_slot(o, r.last));
            let none = ffi::Py_None();
            let port_kind = if port == none {
                Some(false) // nothing to add
            } else if ports == none {
                Some(true) // the first port: set
            } else if ffi::PyLong_CheckExact(ports) != 0
                && ffi::PyLong_CheckExact(port) != 0
                && ffi::PyObject_RichCompareBool(ports, port, ffi::Py_EQ) == 1
            {
                Some(false) // the very port
            } else {
                None
            };
            if let (true, Some(set_port), Some(n), Some(f), Some(l)) =
                (sets == values.as_ptr(), port_kind, count, first, last)
            {
                if n < i64::MAX {
                    put_slot(o, r.count, ffi::PyLong_FromLongLong(n + 1));
                    if t < f {
                        ffi::Py_INCREF(time);
                        put_slot(o, r.first, time);
                    }
                    if t > l {
                        ffi::Py_INCREF(time);
                        put_slot(o, r.last, time);
                    }
                    if set_port {
                        ffi::Py_INCREF(port);
                        put_slot(o, r.ports, port);
                    }
                    return Ok(());
                }
            }
            let py = rec.py();
            let args = (
                Bound::from_borrowed_ptr(py, time),
                Bound::from_borrowed_ptr(py, port),
                values,
                cap,
            );
            rec.call_method1(pyo3::intern!(py, "add"), args)?;
        }
        Ok(())
    }
}

#[pymethods]
impl Fold {
    #[new]
    fn new(py: Python<'_>, event: Bound<'_, PyType>, record: Bound<'_, PyType>) -> PyResult<Self> {
        let missing = |what: &str| PyTypeError::new_err(format!("not a plain slot: {what}"));
        let mut ev = [0isize; N_COLUMNS];
        for (n, name) in FIELDS.iter().enumerate() {
            ev[n] = member_offset(py, &event, name)?.ok_or_else(|| missing(name))?;
        }
        let tenant = member_offset(py, &event, TENANT_FIELD)?.ok_or_else(|| missing(TENANT_FIELD))?;
        let slot = |name: &str| -> PyResult<isize> { member_offset(py, &record, name)?.ok_or_else(|| missing(name)) };
        let rec = RecSlots {
            count: slot("count")?,
            first: slot("first_ms")?,
            last: slot("last_ms")?,
            ports: slot("_ports")?,
            sets: slot("_sets")?,
            applied: slot("_applied")?,
            sent: slot("alerts_sent")?,
            closed: slot("closed")?,
        };
        if record.hasattr("__dict__")? && record.getattr("__dictoffset__")?.extract::<isize>()? != 0 {
            return Err(missing("__dict__"));
        }
        Ok(Fold { event: event.unbind(), record: record.unbind(), ev, tenant, rec, untrack: true })
    }

    /// `PartitionEngine._alert_touched`'s loop: admit new open windows and move touched ones to the end
    /// of `open` (the least recently touched first), and call `late(key, rec)` / `early(key, rec)` for
    /// those that reached the threshold (`threshold`, or `of_key(key)` when it is None); a record of an
    /// odd shape is `slow(key, rec)`, the reference's body for one window.
    #[pyo3(signature = (touched, open, by_end, bin_ms, cap, threshold, of_key, early_on, late, early, slow))]
    #[allow(clippy::too_many_arguments)]
    fn touch<'py>(
        &self,
        py: Python<'py>,
        touched: &Bound<'py, PyDict>,
        open: &Bound<'py, PyDict>,
        by_end: &Bound<'py, PyDict>,
        bin_ms: i64,
        cap: i64,
        threshold: Option<i64>,
        of_key: &Bound<'py, PyAny>,
        early_on: bool,
        late: &Bound<'py, PyAny>,
        early: &Bound<'py, PyAny>,
        slow: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        let rec_tp = self.record.as_ptr() as *mut ffi::PyTypeObject;
        let r = &self.rec;
        for (key, rec) in touched.iter() {
            let o = rec.as_ptr();
            let (closed, first, sent) = unsafe {
                let c = get_slot(o, r.closed);
                let closed = if c == ffi::Py_True() {
                    Some(true)
                } else if c == ffi::Py_False() {
                    Some(false)
                } else {
                    None
                };
                (closed, small_int(get_slot(o, r.first)), small_int(get_slot(o, r.sent)))
            };
            let reached = if unsafe { ffi::Py_TYPE(o) } == rec_tp { self.reaches(&rec, threshold, of_key, &key, cap)? } else { None };
            let (Some(closed), Some(first), Some(sent), Some(reached)) = (closed, first, sent, reached) else {
                slow.call1((&key, &rec))?;
                continue;
            };
            if closed {
                if reached {
                    late.call1((&key, &rec))?;
                }
                continue;
            }
            if open.contains(&key)? {
                open.del_item(&key)?;
                open.set_item(&key, &rec)?;
            } else {
                if bin_ms <= 0 {
                    slow.call1((&key, &rec))?;
                    continue;
                }
                open.set_item(&key, &rec)?;
                let end = (first - first.rem_euclid(bin_ms)).checked_add(bin_ms);
                let Some(end) = end else { return Err(PyTypeError::new_err("window end past an i64")) };
                match by_end.get_item(end)? {
                    Some(keys) => keys.cast_exact::<PyList>()?.append(&key)?,
                    None => by_end.set_item(end, PyList::new(py, [&key])?)?,
                }
            }
            if reached && sent == 0 && early_on {
                early.call1((&key, &rec))?;
            }
        }
        Ok(())
    }

    /// `_advance`'s loop over the keys of one bin end: pop each from `open`, close it, add it to
    /// `closed` (when not None), and call `final_(key, rec)` for those whose port count reaches the
    /// threshold (`threshold`, or `of_key(key)` when it is None) when `final_on`.
    #[pyo3(signature = (keys, open, closed, cap, threshold, of_key, final_on, final_))]
    #[allow(clippy::too_many_arguments)]
    fn close<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        open: &Bound<'py, PyDict>,
        closed: &Bound<'py, PyAny>,
        cap: i64,
        threshold: Option<i64>,
        of_key: &Bound<'py, PyAny>,
        final_on: bool,
        final_: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        let closed_set = if closed.is_none() { None } else { Some(closed.cast_exact::<PySet>()?) };
        let setattr_closed = pyo3::intern!(py, "closed");
        for key in keys.try_iter()? {
            let key = key?;
            let Some(rec) = open.get_item(&key)? else { continue };
            open.del_item(&key)?;
            rec.setattr(setattr_closed, true)?;
            if let Some(set) = closed_set {
                set.add(&key)?;
            }
            if final_on {
                let reached = match self.port_count(&rec, cap)? {
                    Some(n) => match threshold {
                        Some(t) => n >= t,
                        None => n.into_pyobject(py)?.ge(of_key.call1((&key,))?)?,
                    },
                    None => rec
                        .call_method1(pyo3::intern!(py, "port_count"), (cap,))?
                        .ge(of_key_or(py, threshold, of_key, &key)?)?,
                };
                if reached {
                    final_.call1((&key, &rec))?;
                }
            }
        }
        Ok(())
    }

    /// `PartitionEngine.plan`'s keys and load list for a batch, or None (Python's to plan).
    #[pyo3(signature = (batch, bin_ms, closed_before, open, spilled))]
    fn plan<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyAny>,
        bin_ms: i64,
        closed_before: i64,
        open: &Bound<'py, PyDict>,
        spilled: &Bound<'py, PyDict>,
    ) -> PyResult<Option<(Bound<'py, PyList>, Bound<'py, PyList>)>> {
        if bin_ms <= 0 {
            return Ok(None);
        }
        let Some(items) = self.items(batch) else { return Ok(None) };
        let mut buf: Vec<u8> = Vec::with_capacity(96);
        let mut raw: Vec<(Vec<u8>, i64)> = Vec::with_capacity(items.len());
        for (_, ev, t) in &items {
            let start = t - t.rem_euclid(bin_ms);
            if self.key(ev, start, &mut buf).is_none() {
                return Ok(None);
            }
            raw.push((buf.clone(), start));
        }
        let keys = PyList::empty(py);
        let load = PyDict::new(py);
        let any_spilled = !spilled.is_empty();
        for (bytes, start) in raw {
            let key = PyBytes::new(py, &bytes);
            keys.append(&key)?;
            let may_be_stored = start <= closed_before
                || (any_spilled
                    && match start.checked_add(bin_ms) {
                        Some(end) => spilled.contains(end)?,
                        None => return Ok(None),
                    });
            if may_be_stored && !open.contains(&key)? {
                load.set_item(&key, py.None())?;
            }
        }
        let load_list = PyList::new(py, load.keys())?;
        Ok(Some((keys, load_list)))
    }

    /// `PartitionEngine._apply`'s loop: (max event time, events already applied), or None before any
    /// change (Python's to apply). `slow(index, position, event, key)` is the Python engine's body for
    /// one event (rejections, loaded records); it returns whether the event was applied.
    #[pyo3(signature = (batch, keys, loaded, open, touched, memo, values, slow, bin_ms, cap, watermark, future_limit, late_limit, max_time))]
    #[allow(clippy::too_many_arguments)]
    fn apply<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyAny>,
        keys: &Bound<'py, PyList>,
        loaded: &Bound<'py, PyAny>,
        open: &Bound<'py, PyDict>,
        touched: &Bound<'py, PyDict>,
        memo: &Bound<'py, PyDict>,
        values: &Bound<'py, PyAny>,
        slow: &Bound<'py, PyAny>,
        bin_ms: i64,
        cap: &Bound<'py, PyAny>,
        watermark: i64,
        future_limit: i64,
        late_limit: i64,
        max_time: i64,
    ) -> PyResult<Option<(i64, u64)>> {
        if bin_ms <= 0 {
            return Ok(None);
        }
        let Some(items) = self.items(batch) else { return Ok(None) };
        if keys.len() != items.len() {
            return Ok(None);
        }
        let loaded_dict = loaded.cast_exact::<PyDict>().ok();
        let mut max_time = max_time;
        let mut already: u64 = 0;
        let rec_tp = self.record.as_ptr() as *mut ffi::PyTypeObject;
        for (index, (offset, ev, t)) in items.iter().enumerate() {
            let t = *t;
            let start = t - t.rem_euclid(bin_ms);
            let key = keys.get_item(index)?;
            if t > future_limit || start <= late_limit {
                if slow.call1((index, offset, ev, &key))?.is_truthy()? && t > max_time {
                    max_time = t;
                }
                continue;
            }
            let time = unsafe { get_slot(ev.as_ptr(), self.ev[TIME]) };
            let port = unsafe { get_slot(ev.as_ptr(), self.ev[SPORT]) };
            if port.is_null() {
                if slow.call1((index, offset, ev, &key))?.is_truthy()? && t > max_time {
                    max_time = t;
                }
                continue;
            }
            let rec = match touched.get_item(&key)? {
                Some(rec) => rec,
                None => match open.get_item(&key)? {
                    Some(rec) => rec,
                    None => {
                        let data = match &loaded_dict {
                            Some(d) => d.get_item(&key)?,
                            None => Some(loaded.call_method1(pyo3::intern!(py, "get"), (&key,))?),
                        };
                        if data.as_ref().is_none_or(|d| d.is_none()) {
                            let vals = self.values(ev, memo, values)?;
                            let closed = start.checked_add(bin_ms).is_none_or(|end| end <= watermark);
                            let rec = self.first(py, time, port, &vals, offset, closed)?;
                            touched.set_item(&key, rec)?;
                            if t > max_time {
                                max_time = t;
                            }
                        } else if slow.call1((index, offset, ev, &key))?.is_truthy()? && t > max_time {
                            max_time = t;
                        }
                        continue;
                    }
                },
            };
            if unsafe { ffi::Py_TYPE(rec.as_ptr()) } != rec_tp {
                if slow.call1((index, offset, ev, &key))?.is_truthy()? && t > max_time {
                    max_time = t;
                }
                continue;
            }
            if !self.first_time(&rec, offset)? {
                already += 1;
                continue;
            }
            let vals = self.values(ev, memo, values)?;
            self.add(&rec, t, time, port, &vals, cap)?;
            touched.set_item(&key, &rec)?;
            if t > max_time {
                max_time = t;
            }
        }
        Ok(Some((max_time, already)))
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Decoder>()?;
    m.add_class::<delivery::DeliveryTally>()?;
    m.add_function(wrap_pyfunction!(encode_records, m)?)?;
    m.add_class::<Fold>()?;
    m.add("ABI", 1)?;
    Ok(())
}
