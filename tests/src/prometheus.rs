//! A strict parser of the Prometheus text exposition format (0.0.4), for
//! tests of every service's `/metrics`: metric and label names, label value
//! escapes, values (`+Inf`, `-Inf`, `NaN`), one `# TYPE` and one `# HELP`
//! per family before its samples, no duplicate series, counters not
//! negative, and histograms complete (`_bucket` series with ascending `le`
//! ending at `+Inf`, cumulative counts, `_count` equal to the `+Inf`
//! bucket, a `_sum`).

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A metric family: its `# TYPE`, `# HELP` and samples.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Family {
    pub kind: String,
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

/// A whole exposition, by family name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Exposition {
    pub families: BTreeMap<String, Family>,
}

impl Exposition {
    /// The value of the sample `name` whose labels include `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.families
            .values()
            .flat_map(|f| &f.samples)
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => {
            // Go's ParseFloat forms only: digits, sign, point, exponent.
            if s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'))
            {
                return Err(format!("bad value {s:?}"));
            }
            s.parse::<f64>()
                .map_err(|e| format!("bad value {s:?}: {e}"))
        }
    }
}

/// `{a="x",b="y"}` at the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s
        .strip_prefix('{')
        .ok_or_else(|| "labels must start with {".to_owned())?;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("label without '=' in {s:?}"))?;
        let name = rest[..eq].trim();
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or_else(|| format!("label {name} value must be quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated value of label {name}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in label {name}")),
                },
                Some((_, '\n')) => return Err(format!("newline in label {name}")),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} given twice"));
        }
        rest = &rest[end + 1..];
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err(format!("expected ',' or '}}' after label {name}"));
        }
    }
}

/// The family a sample belongs to, given the declared families.
fn family_of<'a>(name: &'a str, families: &BTreeMap<String, Family>) -> &'a str {
    if families.contains_key(name) {
        return name;
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if matches!(families.get(base), Some(f) if f.kind == "histogram" || f.kind == "summary")
            {
                return base;
            }
        }
    }
    name
}

/// Parses and checks a whole exposition.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut seen_series = std::collections::BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            let keyword = parts.next().unwrap_or("");
            if keyword != "TYPE" && keyword != "HELP" {
                continue; // a plain comment
            }
            let name = parts.next().unwrap_or("");
            if !is_metric_name(name) {
                return Err(at(format!("bad metric name {name:?}")));
            }
            let rest = parts.next().unwrap_or("");
            let family = families.entry(name.to_owned()).or_default();
            if keyword == "TYPE" {
                if !family.kind.is_empty() {
                    return Err(at(format!("second TYPE for {name}")));
                }
                if !family.samples.is_empty() {
                    return Err(at(format!("TYPE for {name} after its samples")));
                }
                if !matches!(
                    rest,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ) {
                    return Err(at(format!("unknown type {rest:?}")));
                }
                family.kind = rest.to_owned();
            } else {
                if family.help.is_some() {
                    return Err(at(format!("second HELP for {name}")));
                }
                family.help = Some(rest.to_owned());
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| at("sample without a value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(at(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields = rest.split_whitespace();
        let value = parse_value(fields.next().ok_or_else(|| at("no value".into()))?).map_err(at)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| at(format!("bad timestamp {ts:?}")))?;
        }
        if fields.next().is_some() {
            return Err(at("text after the timestamp".into()));
        }
        let family_name = family_of(name, &families).to_owned();
        let family = families
            .get_mut(&family_name)
            .filter(|f| !f.kind.is_empty())
            .ok_or_else(|| at(format!("sample of {family_name} before its TYPE")))?;
        // NaN is no count either.
        if family.kind == "counter" && (value.is_nan() || value < 0.0) {
            return Err(at(format!("counter {name} is {value}")));
        }
        if !seen_series.insert((name.to_owned(), labels.clone())) {
            return Err(at(format!("series {name}{labels:?} given twice")));
        }
        family.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    for (name, family) in &families {
        if family.kind.is_empty() {
            return Err(format!("{name}: HELP without TYPE"));
        }
        if family.kind == "histogram" {
            check_histogram(name, family)?;
        }
    }
    Ok(Exposition { families })
}

fn check_histogram(name: &str, family: &Family) -> Result<(), String> {
    type Key = BTreeMap<String, String>;
    let mut buckets: BTreeMap<Key, Vec<(f64, f64)>> = BTreeMap::new();
    let mut sums: BTreeMap<Key, f64> = BTreeMap::new();
    let mut counts: BTreeMap<Key, f64> = BTreeMap::new();
    for s in &family.samples {
        let mut key = s.labels.clone();
        if s.name == format!("{name}_bucket") {
            let le = key
                .remove("le")
                .ok_or_else(|| format!("{name}: bucket without le"))?;
            let le = parse_value(&le).map_err(|e| format!("{name}: le {e}"))?;
            buckets.entry(key).or_default().push((le, s.value));
        } else if s.name == format!("{name}_sum") {
            sums.insert(key, s.value);
        } else if s.name == format!("{name}_count") {
            counts.insert(key, s.value);
        } else {
            return Err(format!("{name}: histogram has a sample {}", s.name));
        }
    }
    if buckets.is_empty() {
        return Err(format!("{name}: histogram without buckets"));
    }
    for (key, list) in &buckets {
        let pairs: Vec<_> = list.windows(2).collect();
        for w in pairs {
            if w[0].0.partial_cmp(&w[1].0) != Some(std::cmp::Ordering::Less) {
                return Err(format!("{name}{key:?}: le not ascending"));
            }
            if w[0].1 > w[1].1 {
                return Err(format!("{name}{key:?}: bucket counts not cumulative"));
            }
        }
        let (last_le, last_count) = *list.last().expect("non-empty");
        if last_le != f64::INFINITY {
            return Err(format!("{name}{key:?}: no le=\"+Inf\" bucket"));
        }
        let count = counts
            .get(key)
            .ok_or_else(|| format!("{name}{key:?}: no _count"))?;
        if *count != last_count {
            return Err(format!(
                "{name}{key:?}: _count {count} differs from the +Inf bucket {last_count}"
            ));
        }
        if !sums.contains_key(key) {
            return Err(format!("{name}{key:?}: no _sum"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse;

    const GOOD: &str = "# HELP a_total Things.\n# TYPE a_total counter\na_total{k=\"v \\\"q\\\" \\\\ \\n\"} 3\n\n\
        # TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.6\nh_count 2\n\
        # TYPE g gauge\ng -1.5e3 1700000000000\ng{x=\"1\"} NaN\n";

    #[test]
    fn accepts_a_valid_exposition() {
        let e = parse(GOOD).unwrap();
        assert_eq!(e.value("a_total", &[("k", "v \"q\" \\ \n")]), Some(3.0));
        assert_eq!(e.value("g", &[]), Some(-1500.0));
        assert_eq!(e.families["h"].samples.len(), 5);
    }

    #[test]
    fn refuses_what_prometheus_would_refuse_or_misread() {
        let bad = [
            ("no type", "a 1\n"),
            ("bad name", "# TYPE 1a gauge\n1a 1\n"),
            ("bad type", "# TYPE a gauges\na 1\n"),
            ("two types", "# TYPE a gauge\n# TYPE a gauge\na 1\n"),
            ("type late", "# TYPE a gauge\na 1\n# TYPE b gauge\n# TYPE a counter\n"),
            ("bad value", "# TYPE a gauge\na one\n"),
            ("lower inf", "# TYPE a gauge\na inf\n"),
            ("unquoted label", "# TYPE a gauge\na{k=v} 1\n"),
            ("bad escape", "# TYPE a gauge\na{k=\"\\t\"} 1\n"),
            ("duplicate series", "# TYPE a gauge\na{k=\"1\"} 1\na{k=\"1\"} 2\n"),
            ("negative counter", "# TYPE a counter\na -1\n"),
            ("no +Inf", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n"),
            (
                "not cumulative",
                "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            ),
            (
                "count differs",
                "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
            ),
            ("no sum", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n"),
            ("trailing text", "# TYPE a gauge\na 1 2 3\n"),
        ];
        for (why, text) in bad {
            assert!(parse(text).is_err(), "{why}: accepted {text:?}");
        }
    }
}
