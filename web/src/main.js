// The crmstream dashboard page: listens to the server's snapshot stream
// (/api/events, server-sent events, ~1 Hz) and redraws every panel from the
// latest snapshot. No state is kept here beyond what the charts need.
import {
  BarController, BarElement, CategoryScale, Chart, Filler, Legend, LinearScale,
  LineController, LineElement, PointElement, ScatterController, Tooltip,
} from 'chart.js';
import './style.css';

Chart.register(BarController, BarElement, CategoryScale, Filler, Legend, LinearScale,
  LineController, LineElement, PointElement, ScatterController, Tooltip);
Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
Chart.defaults.color = '#475569';
Chart.defaults.animation = false;

const $ = (id) => document.getElementById(id);
const fmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });
const fmtInt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const humanize = (name) => String(name).replace(/_/g, ' ');
const pct = (p) => (p == null || Number.isNaN(p) ? '–' : `${Math.round(p * 100)}%`);
const time = (ms) => (ms ? new Date(ms).toLocaleTimeString([], { hour12: false }) : '–');
// Event times (alerts, anomalies) are the events' own clock, which may be
// days apart: show the date with them.
const eventTime = (ms) => (ms ? new Date(ms).toLocaleString('en-GB', {
  month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hour12: false,
}) : '–');
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k === 'style') node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}
// Green (low risk) to red (high risk).
const riskColor = (x) => `hsl(${Math.round(130 - 130 * Math.min(1, Math.max(0, x)))} 65% 48%)`;
// Diverging blue-white-red for values in [-1, 1].
function divergingColor(v) {
  if (v == null || Number.isNaN(v)) return '#e2e8f0';
  const a = Math.min(1, Math.abs(v));
  return v >= 0 ? `rgba(220, 38, 38, ${0.08 + 0.8 * a})` : `rgba(37, 99, 235, ${0.08 + 0.8 * a})`;
}

// ---- charts ---------------------------------------------------------------
const riskChart = new Chart($('risk-chart'), {
  type: 'bar',
  data: { labels: [], datasets: [{ label: 'customers', data: [], backgroundColor: [] }] },
  options: {
    maintainAspectRatio: false,
    plugins: { legend: { display: false } },
    scales: {
      x: { title: { display: true, text: 'churn probability' }, grid: { display: false } },
      y: { title: { display: true, text: 'customers' }, beginAtZero: true },
    },
  },
});

const throughputChart = new Chart($('throughput-chart'), {
  type: 'line',
  data: {
    datasets: [
      { label: 'events/s in', data: [], borderColor: '#2563eb', backgroundColor: 'rgba(37,99,235,.12)', fill: true, pointRadius: 0, yAxisID: 'y' },
      { label: 'records/s out', data: [], borderColor: '#059669', pointRadius: 0, yAxisID: 'y' },
      { label: 'lag (records)', data: [], borderColor: '#d97706', borderDash: [5, 4], pointRadius: 0, yAxisID: 'lag' },
    ],
  },
  options: {
    maintainAspectRatio: false,
    parsing: false,
    scales: {
      x: { type: 'linear', ticks: { callback: (v) => time(v), maxTicksLimit: 6 } },
      y: { beginAtZero: true, title: { display: true, text: 'per second' } },
      lag: { position: 'right', beginAtZero: true, grid: { display: false }, title: { display: true, text: 'lag' } },
    },
    plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } },
  },
});

const segmentsChart = new Chart($('segments-chart'), {
  type: 'bar',
  data: { labels: [], datasets: [{ label: 'customers', data: [], backgroundColor: '#6366f1' }] },
  options: {
    indexAxis: 'y',
    maintainAspectRatio: false,
    plugins: { legend: { display: false } },
    scales: { x: { beginAtZero: true }, y: { grid: { display: false } } },
  },
});

const anomalyChart = new Chart($('anomaly-chart'), {
  type: 'scatter',
  data: {
    datasets: [
      { label: 'global metric', data: [], backgroundColor: '#dc2626', pointRadius: 5 },
      { label: 'customer', data: [], backgroundColor: 'rgba(124,58,237,.55)', pointRadius: 3 },
    ],
  },
  options: {
    maintainAspectRatio: false,
    parsing: false,
    scales: {
      x: { type: 'linear', ticks: { callback: (v) => eventTime(v), maxTicksLimit: 4 } },
      y: { beginAtZero: true, title: { display: true, text: 'score' } },
    },
    plugins: {
      legend: { position: 'bottom', labels: { boxWidth: 12 } },
      tooltip: { callbacks: { label: (c) => `${c.raw.subject}: score ${fmt.format(c.raw.y)} at ${eventTime(c.raw.x)}` } },
    },
  },
});

// ---- panels -----------------------------------------------------------------
function explain(contributions) {
  if (!contributions || contributions.length === 0) return 'no explanation attached';
  return contributions.map((c) => {
    const dir = c.contribution >= 0 ? 'raises' : 'lowers';
    return `${humanize(c.feature)} = ${fmt.format(c.value)} (${dir} risk ${fmt.format(Math.abs(c.contribution))})`;
  }).join('; ');
}

function renderAlerts(alerts) {
  const counts = $('severity-counts');
  counts.replaceChildren(...['critical', 'high', 'warning'].map((s) =>
    el('span', { class: `badge badge-${s}` }, `${s} ${fmtInt.format(alerts.by_severity?.[s] ?? 0)}`)));
  const feed = $('alert-feed');
  feed.replaceChildren(...alerts.recent.map((a) => {
    const bar = el('div', { class: 'prob-bar' },
      el('div', { class: 'prob-fill', style: `width:${Math.round(a.churn_probability * 100)}%;background:${riskColor(a.churn_probability)}` }));
    return el('li', { class: `alert-row sev-${a.severity}`, 'data-alert-id': a.alert_id },
      el('div', { class: 'alert-head' },
        el('span', { class: `badge badge-${a.severity}` }, a.severity),
        el('strong', {}, a.customer_id),
        el('span', { class: 'prob' }, pct(a.churn_probability)),
        el('time', {}, eventTime(a.as_of_ms))),
      bar,
      el('div', { class: 'alert-why' }, explain(a.contributions)),
      a.trigger ? el('div', { class: 'alert-trigger' }, `after ${humanize(a.trigger)}`) : null);
  }));
  $('alert-empty').hidden = alerts.recent.length > 0;
}

function renderRisk(risk) {
  const bins = risk.histogram;
  const n = bins.length;
  const total = bins.reduce((s, x) => s + x, 0);
  const atRisk = bins.reduce((s, x, i) => (i / n >= 0.5 ? s + x : s), 0);
  const unscored = risk.unscored ?? 0;
  const model = risk.model ?? {};
  // Until the churn model has earned it (enough closings seen, AUC above the
  // floor) the engine publishes no probability: say so instead of a count.
  const warming = model.state && model.state !== 'open';
  riskChart.data.labels = bins.map((_, i) => `${(i / n).toFixed(2)}`);
  riskChart.data.datasets[0].data = bins;
  riskChart.data.datasets[0].backgroundColor = bins.map((_, i) => riskColor((i + 0.5) / n));
  riskChart.update('none');
  $('risk-chart').dataset.total = String(total);
  $('risk-chart').dataset.unscored = String(unscored);
  $('risk-caption').textContent = warming
    ? `${fmtInt.format(unscored)} customers, not scored while the model warms up`
    : `${fmtInt.format(total)} customers, latest calibrated score each`;
  $('kpi-customers').textContent = fmtInt.format(total + unscored);
  const gate = $('kpi-at-risk');
  gate.dataset.state = model.state || '';
  if (warming) {
    const what = model.state === 'below_floor' ? 'below the AUC floor' : 'warming up';
    gate.textContent = `${what}: ${fmtInt.format(model.labels)} labels, AUC ${Number(model.auc).toFixed(2)}`;
    gate.classList.add('kpi-warming');
  } else {
    gate.textContent = total ? `${fmtInt.format(atRisk)} (${pct(atRisk / total)})` : '0';
    gate.classList.remove('kpi-warming');
  }
}

function renderEngine(engine) {
  const s = engine.samples;
  throughputChart.data.datasets[0].data = s.filter((x) => x[1] != null).map((x) => ({ x: x[0], y: x[1] }));
  throughputChart.data.datasets[1].data = s.filter((x) => x[3] != null).map((x) => ({ x: x[0], y: x[3] }));
  throughputChart.data.datasets[2].data = s.filter((x) => x[2] != null).map((x) => ({ x: x[0], y: x[2] }));
  throughputChart.update('none');
  const last = s.length ? s[s.length - 1] : null;
  $('kpi-rate').textContent = last && last[1] != null ? fmtInt.format(last[1]) : (last && last[3] != null ? `${fmtInt.format(last[3])} out` : '–');
  $('kpi-lag').textContent = last && last[2] != null ? fmtInt.format(last[2]) : '–';
  $('engine-caption').textContent = engine.reachable ? 'engine metrics live' : 'engine metrics unavailable; output rate shown';
}

function renderSegments(seg) {
  const rows = seg.centroids.length ? seg.centroids : seg.sizes_from_scores;
  segmentsChart.data.labels = rows.map((r) => `segment ${r.segment}`);
  segmentsChart.data.datasets[0].data = rows.map((r) => r.size);
  segmentsChart.update('none');
  $('segments-caption').textContent = seg.as_of_ms ? `centroids at ${eventTime(seg.as_of_ms)}, ${fmtInt.format(seg.changes)} moves` : 'sizes from latest scores';
  const table = $('centroids');
  if (!seg.centroids.length || !seg.features.length) {
    table.replaceChildren();
    return;
  }
  // Each feature column is coloured by its own range, so features on very
  // different scales can be compared at a glance.
  const ranges = seg.features.map((_, j) => {
    const col = seg.centroids.map((c) => c.center[j]).filter((v) => v != null);
    return [Math.min(...col), Math.max(...col)];
  });
  const head = el('tr', {}, el('th', {}, 'segment'), el('th', {}, 'size'), ...seg.features.map((f) => el('th', {}, humanize(f))));
  const body = seg.centroids.map((c) => el('tr', {},
    el('th', {}, String(c.segment)), el('td', {}, fmtInt.format(c.size)),
    ...c.center.map((v, j) => {
      const [lo, hi] = ranges[j];
      const t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
      return el('td', { style: `background:rgba(99,102,241,${0.06 + 0.6 * t})` }, fmt.format(v));
    })));
  table.replaceChildren(el('thead', {}, head), el('tbody', {}, ...body));
}

function renderAnomalies(an) {
  const metric = an.recent.filter((a) => a.kind === 'metric');
  const customer = an.recent.filter((a) => a.kind === 'customer');
  const point = (a) => ({ x: a.as_of_ms, y: a.score, subject: a.subject });
  anomalyChart.data.datasets[0].data = metric.map(point);
  anomalyChart.data.datasets[1].data = customer.map(point);
  anomalyChart.update('none');
  $('anomaly-caption').textContent = `${fmtInt.format(an.total)} in total`;
  $('kpi-anomalies').textContent = fmtInt.format(an.total);
  // A customer anomaly's severity; a global one's shift (direction, minutes).
  const level = (a) => (a.kind === 'customer'
    ? (a.severity ? el('span', { class: `badge badge-${a.severity}` }, a.severity) : null)
    : el('span', { class: 'badge badge-shift' },
      `${a.direction === 'down' ? '↓' : a.direction === 'up' ? '↑' : ''} ${a.sustained ? `${fmtInt.format(a.minutes)} min` : 'point'}`));
  $('anomaly-list').replaceChildren(...an.recent.slice(0, 5).map((a) => el('li', { class: 'anomaly-row' },
    el('time', {}, eventTime(a.as_of_ms)), ' ', level(a), ' ',
    el('strong', {}, humanize(a.subject)), ` score ${fmt.format(a.score)}: `,
    a.deviations.map((d) => `${d.name ? `${humanize(d.name)} ` : ''}${fmt.format(d.observed)} vs expected ${fmt.format(d.expected)}`).join(', '))));
}

function renderCorrelations(c) {
  const box = $('correlations');
  if (!c) return;
  $('correlation-caption').textContent = `${c.window_minutes} min window, ${eventTime(c.as_of_ms)}`;
  const head = el('tr', {}, el('th', {}), ...c.metrics.map((m) => el('th', {}, humanize(m))));
  const rows = c.matrix.map((row, i) => el('tr', {}, el('th', {}, humanize(c.metrics[i])),
    ...row.map((v) => el('td', { class: 'corr-cell', style: `background:${divergingColor(v)}` }, v == null ? 'n/a' : v.toFixed(2)))));
  box.replaceChildren(el('table', { class: 'corr-table' }, el('thead', {}, head), el('tbody', {}, ...rows)),
    el('div', { class: 'legend' }, el('span', { class: 'swatch', style: `background:${divergingColor(-1)}` }), ' −1 ',
      el('span', { class: 'swatch', style: `background:${divergingColor(0)}` }), ' 0 ',
      el('span', { class: 'swatch', style: `background:${divergingColor(1)}` }), ' +1'));
}

function render(state) {
  renderAlerts(state.alerts);
  renderRisk(state.risk);
  renderEngine(state.engine);
  renderSegments(state.segments);
  renderAnomalies(state.anomalies);
  renderCorrelations(state.correlations);
  $('kpi-alerts').textContent = fmtInt.format(state.alerts.total);
  const conn = $('connection');
  conn.textContent = state.feed.connected ? `live · ${time(state.now_ms)}` : `Kafka: ${state.feed.detail}`;
  conn.className = `pill ${state.feed.connected ? 'pill-ok' : 'pill-bad'}`;
  window.crmDashboard.updates += 1;
  window.crmDashboard.state = state;
}

// ---- live stream ----------------------------------------------------------
window.crmDashboard = { updates: 0, state: null };
function connect() {
  const source = new EventSource('api/events');
  source.addEventListener('state', (e) => {
    try { render(JSON.parse(e.data)); } catch (err) { console.error('bad snapshot', err); }
  });
  source.onerror = () => {
    const conn = $('connection');
    conn.textContent = 'dashboard server unreachable, retrying…';
    conn.className = 'pill pill-bad';
  };
}
connect();

// ---- customer lookup --------------------------------------------------------
function renderValue(v) {
  if (v === null || typeof v !== 'object') return el('span', {}, typeof v === 'number' ? fmt.format(v) : String(v));
  if (Array.isArray(v)) {
    if (v.every((x) => x === null || typeof x !== 'object')) return el('span', {}, v.join(', '));
    return el('div', {}, ...v.map(renderValue));
  }
  return el('dl', { class: 'kv' }, ...Object.entries(v).flatMap(([k, x]) => [el('dt', {}, humanize(k)), el('dd', {}, renderValue(x))]));
}
$('lookup-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const id = $('lookup-id').value.trim();
  const out = $('lookup-result');
  if (!id) return;
  out.replaceChildren(el('p', { class: 'empty' }, 'looking up…'));
  try {
    const res = await fetch(`api/customers/${encodeURIComponent(id)}`);
    const body = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
    out.dataset.status = String(res.status);
    if (!res.ok) {
      out.replaceChildren(el('p', { class: 'lookup-error' }, `${res.status}: ${body.error ?? 'error'}${body.detail ? ` (${body.detail})` : ''}`));
      return;
    }
    out.replaceChildren(renderValue(body));
  } catch (err) {
    out.replaceChildren(el('p', { class: 'lookup-error' }, `request failed: ${err}`));
  }
});
