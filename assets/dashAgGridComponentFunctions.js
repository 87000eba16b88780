/* Cell renderers for the triage grid (app/figures/grid_columns.py names them).
 *
 * They only draw what the server precomputed (app/figures/grid_rows.py): no logic, no data
 * shaping, so they stay cheap for 1,000 rows (AG Grid renders only the visible ones). Text is
 * always passed as React children or attributes, never as HTML: run names are user input.
 * The exception is Age, which formats the time of the last update against the browser's clock
 * every second, so the server never resends a row only because it grew older.
 */
var dagcomfuncs = (window.dashAgGridComponentFunctions = window.dashAgGridComponentFunctions || {});

var TL_LIGHTS = { helping: "\u25CF", hurting: "\u25A0", none: "\u25CB" };

dagcomfuncs.RunLink = function (props) {
  var data = props.data || {};
  return React.createElement(
    "a",
    { className: "run-link", href: "/run/" + encodeURIComponent(data.run_id || ""), title: data.run_id },
    props.value
  );
};

dagcomfuncs.RunStatus = function (props) {
  var data = props.data || {};
  var children = [props.value];
  // A stop was asked for and the run has not ended yet: say so in words (an icon glyph would
  // depend on the viewer's fonts; a run that did stop already says "stopped").
  if (data.stop_requested && props.value !== "stopped") {
    children.push(React.createElement("span", { key: "s", className: "stop-flag", title: "stop requested" }, " \u00B7 stopping"));
  }
  return React.createElement("span", { className: "status status-" + props.value }, children);
};

dagcomfuncs.HealthBadge = function (props) {
  var state = props.value || "grey";
  var reason = (props.data || {})[props.reasonField] || "";
  return React.createElement(
    "span",
    { className: "badge badge-" + state, title: reason, "data-state": state, "aria-label": reason },
    (props.shapes || {})[state] || "?"  // STATE_SHAPES, from the column definition
  );
};

dagcomfuncs.LayerLights = function (props) {
  var layers = props.value || [];
  if (!layers.length) {
    return React.createElement("span", { className: "lights-empty", title: "no LCA measured" }, "\u2013");
  }
  return React.createElement(
    "span",
    { className: "lights" },
    layers.map(function (layer, i) {
      var title = (layer[0] || "(root)") + ": " + layer[1] + (layer[2] ? " (" + layer[2] + ")" : "");
      return React.createElement(
        "span",
        { key: i, className: "light light-" + layer[1], title: title, "data-state": layer[1] },
        TL_LIGHTS[layer[1]] || "?"
      );
    })
  );
};

dagcomfuncs.Sparkline = function (props) {
  var data = props.data || {};
  var alarms = data.spark_alarms || [];
  var children = [];
  if (props.value) {
    children.push(React.createElement("polyline", { key: "l", points: props.value, className: "spark-line" }));
  }
  alarms.forEach(function (x, i) {
    children.push(React.createElement("line", { key: "a" + i, x1: x, x2: x, y1: 19, y2: 24, className: "spark-alarm" }));
  });
  return React.createElement(
    "svg",
    { className: "spark", width: 120, height: 24, viewBox: "0 0 120 24", role: "img" },
    [React.createElement("title", { key: "t" }, data.spark_title || "")].concat(children)
  );
};

var TL_AGE_UNITS = [["d", 86400], ["h", 3600], ["m", 60]];

/* "12s ago", "3m ago", "2h ago", "4d ago" (app/formatting.py format_age, in the browser). */
function tlAge(ms, now) {
  if (ms === null || ms === undefined) {
    return "never";
  }
  var seconds = Math.max(0, (now - ms) / 1000);
  for (var i = 0; i < TL_AGE_UNITS.length; i++) {
    if (seconds >= TL_AGE_UNITS[i][1]) {
      return Math.floor(seconds / TL_AGE_UNITS[i][1]) + TL_AGE_UNITS[i][0] + " ago";
    }
  }
  return Math.floor(seconds) + "s ago";
}

dagcomfuncs.Age = function (props) {
  var clock = React.useState(Date.now());
  var setNow = clock[1];
  React.useEffect(function () {
    var timer = setInterval(function () {
      setNow(Date.now());
    }, 1000);
    return function () {
      clearInterval(timer);
    };
  }, []);
  var title = props.value === null || props.value === undefined ? "" : new Date(props.value).toISOString();
  return React.createElement("span", { className: "age", title: title }, tlAge(props.value, clock[0]));
};
