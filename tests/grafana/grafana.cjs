// Grafana's own code, at the version deploy/compose.yaml runs (@grafana/data 11.3.0), answering the dashboard
// tests: one JSON request on stdin, one JSON answer on stdout.
//   {"units": ["celsius", ...]}            -> the registry's ids, and how Grafana prints 312 in each unit asked
//   {"intervals": [[rangeMs, maxDataPoints, minInterval|null], ...]}  -> rangeutil.calculateInterval for each
//   {"transform": {"frames": [DataFrameJSON], "steps": [DataTransformerConfig]}}  -> the frames after Grafana's
//                                           standard transformations, as {name: values} tables
//   {"snapshot": [DataFrameJSON]}          -> the frames as Grafana reads a snapshot query's data
// @grafana/data is a browser library: it reads `window` and `navigator` when it loads, so give it both.
'use strict';
globalThis.window = globalThis;
if (typeof navigator === 'undefined') {
  globalThis.navigator = { language: 'en-US', languages: ['en-US'] };
}
const data = require('@grafana/data');
const { lastValueFrom } = require('rxjs');

function table(frame) {
  const out = {};
  for (const f of frame.fields) {
    out[data.getFieldDisplayName(f, frame)] = Array.from(f.values);
  }
  return out;
}

async function answer(req) {
  const out = {};
  if (req.units) {
    const ids = [];
    for (const cat of data.getValueFormats()) {
      for (const sub of cat.submenu) {
        ids.push(sub.value);
      }
    }
    out.registry = ids;
    out.printed = {};
    for (const u of req.units) {
      out.printed[u] = data.formattedValueToString(data.getValueFormat(u)(312, 0));
    }
  }
  if (req.intervals) {
    out.intervals = req.intervals.map(([rangeMs, points, low]) => {
      const range = { from: data.dateTime(0), to: data.dateTime(rangeMs), raw: { from: 'now', to: 'now' } };
      return data.rangeUtil.calculateInterval(range, points, low || undefined);
    });
  }
  if (req.snapshot) {
    out.snapshot = req.snapshot.map((f) => table(data.dataFrameFromJSON(f)));
  }
  if (req.transform) {
    // what Grafana's app registers (public/app/features/transformers/standardTransformers.ts), without editors
    // (seriesToColumns is the old name of joinByField and shares its id: the first of an id wins)
    data.standardTransformersRegistry.setInit(() => {
      const byId = new Map();
      for (const t of Object.values(data.standardTransformers)) {
        if (!byId.has(t.id)) {
          byId.set(t.id, { id: t.id, name: t.name, transformation: t });
        }
      }
      return Array.from(byId.values());
    });
    const frames = req.transform.frames.map((f) => data.dataFrameFromJSON(f));
    const result = await lastValueFrom(data.transformDataFrame(req.transform.steps, frames));
    out.transformed = result.map(table);
  }
  return out;
}

let input = '';
process.stdin.on('data', (chunk) => (input += chunk));
process.stdin.on('end', () => {
  answer(JSON.parse(input)).then(
    (out) => process.stdout.write(JSON.stringify(out)),
    (err) => {
      process.stderr.write(String(err && err.stack ? err.stack : err) + '\n');
      process.exit(1);
    }
  );
});
