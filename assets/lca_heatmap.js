/* The LCA heatmap page (/run/<id>/lca), browser side: every animation tick the server sends each
 * shown layer's frame as 8-bit codes against the colour scale ±scale (app/figures/heatmap_codec.py
 * describes the payload and decodes it the same way in Python); here each payload becomes its
 * graph's z (q / 127 · scale; the sparse outliers exact), the hover text, the colour range, the
 * scale note and the title. Non-finite cells are gaps, and their hover says NaN, +Inf or −Inf.
 * nextIndex advances the animation without a round trip to the server. */
(function () {
  "use strict";
  const LEVELS = 127;

  function buffer(base64) {
    const raw = atob(base64);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) {
      bytes[i] = raw.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function label(v) {
    if (Number.isNaN(v)) {
      return "NaN";
    }
    if (!Number.isFinite(v)) {
      return v > 0 ? "+Inf" : "−Inf";
    }
    return v === 0 ? "0" : String(Number(v.toPrecision(3)));
  }

  /* {z: rows of Float32Array, text: rows of hover labels} of one payload. */
  function decode(p) {
    const codes = new Int8Array(buffer(p.codes));
    const index = new Uint32Array(buffer(p.outlier_index));
    const exact = new Float32Array(buffer(p.outlier_value));
    const values = new Float32Array(p.rows * p.cols);
    const text = new Array(values.length);
    const unit = p.scale / LEVELS;
    for (let i = 0; i < values.length; i++) {
      values[i] = codes[i] * unit;
      text[i] = "≈ " + label(values[i]);
    }
    const beyond = " (beyond ±" + label(p.scale) + ")";
    for (let k = 0; k < index.length; k++) {
      const v = exact[k];
      values[index[k]] = Number.isFinite(v) ? v : NaN; // a gap, never a colour of the scale
      text[index[k]] = Number.isFinite(v) ? label(v) + beyond : label(v);
    }
    const z = [];
    const rows = [];
    for (let r = 0; r < p.rows; r++) {
      z.push(values.subarray(r * p.cols, (r + 1) * p.cols));
      rows.push(text.slice(r * p.cols, (r + 1) * p.cols));
    }
    return { z: z, text: rows };
  }

  /* One figure per graph on the page (ids and figures in the same order), from its layer's
   * payload; a graph whose layer has none this tick is left as it is. */
  function figures(payloads, ids, current) {
    const noUpdate = window.dash_clientside.no_update;
    const byLayer = {};
    (payloads || []).forEach(function (p) {
      byLayer[p.layer] = p;
    });
    return ids.map(function (id, i) {
      const p = byLayer[id.layer];
      const figure = current[i];
      if (!p || !figure || !figure.data || !figure.data.length) {
        return noUpdate;
      }
      const decoded = decode(p);
      const trace = Object.assign({}, figure.data[0], {
        z: decoded.z,
        text: decoded.text,
        zmin: -p.scale,
        zmax: p.scale,
        meta: [p.note],
      });
      const title = Object.assign({}, figure.layout.title, { text: p.title });
      return { data: [trace], layout: Object.assign({}, figure.layout, { title: title }) };
    });
  }

  /* The frame after `index`, wrapping around (the animation loops). */
  function nextIndex(n, index, steps) {
    const count = steps ? steps.length : 0;
    return count === 0 || index === null || index === undefined ? 0 : (index + 1) % count;
  }

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    trainlight_lca: { figures: figures, nextIndex: nextIndex, decode: decode },
  });
})();
