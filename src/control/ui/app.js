// sgemu web dashboard (GET /ui; src/control/api/ui.ts serves it). Plain JS, no framework, no
// request beyond this daemon's API:
//   GET /v1/instances, /v1/security-groups   instances, groups and rules (on load, after changes)
//   GET /v1/status (1 s)                      listeners' live state and counters → the small charts
//   GET /v1/events (streamed)                 flow decisions, read with fetch so it can be signed
//   GET /v1/conntrack?limit&offset&sort…      one page of the table (server-side sort and paging)
//   POST /v1/explain                          why a flow was decided
//   POST /  (EC2 Query API)                   Authorize/Revoke SecurityGroupIngress/Egress
// Never freezes under load: events go to a bounded ring (RING entries) and the flow table is
// redrawn at most every RENDER_MS, as at most LIVE_ROWS rows reused in place; values are always set
// as text, never as markup. With --api-credentials the calls are SigV4-signed (crypto.subtle,
// which browsers give to http://127.0.0.1 and https pages).
'use strict';
(() => {
  const RING = 5000;
  const LIVE_ROWS = 40;        // drawn while streaming (about what the box shows)
  const PAUSED_ROWS = 400;     // drawn once when paused, to scroll through
  const RENDER_MS = 250;
  const HISTORY = 60;

  /** @param {string} sel */
  const $ = (sel) => /** @type {HTMLElement} */ (document.querySelector(sel));
  /**
   * An element: attrs set as properties or attributes, children appended as nodes or text.
   * @param {string} tag @param {Record<string, any>} [attrs] @param {...any} kids
   */
  function h(tag, attrs, ...kids) {
    const el = tag.startsWith('svg:') ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs ?? {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.setAttribute('class', v);
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'text') el.textContent = String(v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of kids.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
    return el;
  }
  const badge = (text, kind) => h('span', { class: `badge b-${kind ?? text}`, text });
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const hostPort = (a, p) => (a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`);
  function fmtBytes(n) {
    if (n < 1024) return `${Math.round(n)} B`;
    if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
    if (n < 1073741824) return `${(n / 1048576).toFixed(1)} MiB`;
    return `${(n / 1073741824).toFixed(2)} GiB`;
  }
  /** Sets text only when it changed (an unchanged value costs no layout). */
  const setText = (el, text) => { if (el.textContent !== text) el.textContent = text; };
  const fmtRate = (n) => (n >= 100 ? String(Math.round(n)) : n >= 10 ? n.toFixed(0) : n.toFixed(1));

  // ---- API access (SigV4 when credentials are set) ------------------------------------------

  const CREDS_KEY = 'sgemu-api-credentials';
  /** @returns {{accessKeyId: string, secretAccessKey: string} | null} */
  function creds() {
    try { return JSON.parse(sessionStorage.getItem(CREDS_KEY) ?? 'null'); } catch { return null; }
  }
  const enc = new TextEncoder();
  const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
  async function sha256hex(text) { return hex(await crypto.subtle.digest('SHA-256', enc.encode(text))); }
  async function hmac(key, text) {
    const k = await crypto.subtle.importKey('raw', typeof key === 'string' ? enc.encode(key) : key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    return crypto.subtle.sign('HMAC', k, enc.encode(text));
  }
  const uriEncode = (s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
  /** The headers of a SigV4-signed request (as src/control/api/sigv4.ts verifies it). */
  async function sign(method, path, body, c) {
    if (!crypto.subtle) throw new Error('this page cannot sign requests here (crypto.subtle needs https or a loopback address)');
    const amzDate = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
    const day = amzDate.slice(0, 8);
    const u = new URL(path, location.origin);
    const query = [...u.searchParams.entries()].map(([k, v]) => [uriEncode(k), uriEncode(v)])
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0)).map(([k, v]) => `${k}=${v}`).join('&');
    const payloadHash = await sha256hex(body ?? '');
    const headers = { host: location.host, 'x-amz-content-sha256': payloadHash, 'x-amz-date': amzDate };
    const names = Object.keys(headers).sort();
    const canonical = [method, u.pathname.split('/').map((s) => uriEncode(decodeURIComponent(s))).join('/'), query,
      names.map((n) => `${n}:${headers[n]}\n`).join(''), names.join(';'), payloadHash].join('\n');
    const scope = `${day}/us-east-1/ec2/aws4_request`;
    const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, await sha256hex(canonical)].join('\n');
    let key = await hmac('AWS4' + c.secretAccessKey, day);
    for (const part of ['us-east-1', 'ec2', 'aws4_request']) key = await hmac(key, part);
    const sig = hex(await hmac(key, toSign));
    return {
      'x-amz-content-sha256': payloadHash, 'x-amz-date': amzDate,
      authorization: `AWS4-HMAC-SHA256 Credential=${c.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${sig}`,
    };
  }
  /** @param {string} method @param {string} path @param {string} [body] @param {string} [type] */
  async function api(method, path, body, type) {
    const headers = body !== undefined ? { 'content-type': type ?? 'application/json' } : {};
    const c = creds();
    if (c) Object.assign(headers, await sign(method, path, body, c));
    const res = await fetch(path, { method, headers, body, cache: 'no-store' });
    if (res.status === 401 || res.status === 403) needCredentials();
    return res;
  }
  async function getJson(path) {
    const res = await api('GET', path);
    const j = await res.json();
    if (!res.ok) throw new Error(`${j.error ?? res.status}: ${j.message ?? ''}`);
    return j;
  }
  /** An EC2 Query API call; resolves to the response document, or throws {code, message}. */
  async function ec2(params) {
    const body = new URLSearchParams({ Version: '2016-11-15', ...params }).toString();
    const res = await api('POST', '/', body, 'application/x-www-form-urlencoded; charset=utf-8');
    const doc = new DOMParser().parseFromString(await res.text(), 'application/xml');
    const err = doc.querySelector('Errors > Error');
    if (!res.ok || err) {
      throw Object.assign(new Error(err?.querySelector('Message')?.textContent ?? `HTTP ${res.status}`), { code: err?.querySelector('Code')?.textContent ?? `HTTP${res.status}` });
    }
    return doc;
  }

  let credsPrompted = false;
  function needCredentials() {
    if (credsPrompted) return;
    credsPrompted = true;
    openCreds();
  }
  function openCreds() {
    const d = /** @type {HTMLDialogElement} */ ($('#creds-dialog'));
    const c = creds();
    const f = /** @type {HTMLFormElement} */ ($('#creds-form'));
    f.accessKeyId.value = c?.accessKeyId ?? '';
    f.secretAccessKey.value = c?.secretAccessKey ?? '';
    if (!d.open) d.showModal();
  }
  $('#creds-open').addEventListener('click', openCreds);
  $('#creds-dialog').addEventListener('close', () => {
    const d = /** @type {HTMLDialogElement} */ ($('#creds-dialog'));
    const f = /** @type {HTMLFormElement} */ ($('#creds-form'));
    if (d.returnValue === 'save' && f.accessKeyId.value && f.secretAccessKey.value) {
      sessionStorage.setItem(CREDS_KEY, JSON.stringify({ accessKeyId: f.accessKeyId.value.trim(), secretAccessKey: f.secretAccessKey.value }));
    } else if (d.returnValue === 'clear') sessionStorage.removeItem(CREDS_KEY);
    credsPrompted = false;
    if (d.returnValue === 'save') { void loadModel(); restartStream(); }
  });

  // ---- Model: instances, groups, listeners -----------------------------------------------

  /** @type {any[]} */ let instances = [];
  /** @type {any[]} */ let groups = [];
  /** listener key → { el: cells to update, hist: per-second series, last: previous counters } */
  const listenerViews = new Map();
  const lkey = (protocol, address, port) => `${protocol}|${address}|${port}`;

  // What was last drawn: a reload that finds the same model (the status poll sees the policy
  // version our own authorize already fetched) leaves the page alone, so that no element, focus or
  // scroll position is replaced under the user.
  let drawnModel = '';
  async function loadModel() {
    try {
      [instances, groups] = await Promise.all([getJson('/v1/instances'), getJson('/v1/security-groups')]);
    } catch (e) {
      drawnModel = '';
      $('#instance-list').replaceChildren(h('p', { class: 'error', text: `cannot read the daemon: ${e.message}` }));
      return;
    }
    // (each instance's `listeners` are live counters, drawn from the status poll: not the model)
    const model = JSON.stringify([instances, groups], (k, v) => (k === 'listeners' ? undefined : v));
    if (model === drawnModel) return;
    drawnModel = model;
    renderInstances();
    renderGroups();
    const sel = /** @type {HTMLSelectElement} */ ($('#ct-instance'));
    const keep = sel.value;
    sel.replaceChildren(h('option', { value: '', text: 'all' }), ...instances.map((i) => h('option', { value: i.name, text: i.name })));
    sel.value = instances.some((i) => i.name === keep) ? keep : '';
  }

  function spark(kind, label) {
    const line = h('svg:polyline', { points: '' });
    const svg = h('svg:svg', { viewBox: `0 0 ${HISTORY - 1} 20`, preserveAspectRatio: 'none', role: 'img', 'aria-label': label }, line);
    const value = h('span', { class: 'fixed-text', text: `${label}: –` });
    return { el: h('div', { class: `spark ${kind}` }, svg, value), line, value, svg, label };
  }
  function drawSpark(s, series, fmt) {
    const max = Math.max(1, ...series);
    s.line.setAttribute('points', series.map((v, i) => `${i + HISTORY - series.length},${(20 - (v / max) * 19).toFixed(1)}`).join(' '));
    const now = series.length ? series[series.length - 1] : 0;
    setText(s.value, `${s.label}: ${fmt(now)}`);
    s.svg.setAttribute('aria-label', `${s.label}, last minute, now ${fmt(now)}, peak ${fmt(max)}`);
  }

  function listenerRow(inst, kind, protocol, port, listenPort, target) {
    const key = lkey(protocol, inst.address, listenPort);
    const prev = listenerViews.get(key);
    const v = {
      backend: h('td'), mode: h('td'), flows: h('td', { class: 'num' }), totals: h('span', { class: 'fixed-text' }),
      sparks: [spark('flows', 'flows/s'), spark('bytes', 'bytes/s'), spark('rejects', 'rejects/s')],
      hist: prev?.hist ?? { flows: [], bytes: [], rejects: [] }, last: prev?.last ?? null, state: '',
    };
    listenerViews.set(key, v);
    const what = kind === 'service'
      ? `${protocol} ${port}${listenPort !== port ? ` (listens :${listenPort})` : ''} → ${target}`
      : `${protocol} :${listenPort} → ${target}`;
    return h('tr', { 'data-listener': key },
      h('td', { class: 'mono', text: what }), v.backend, v.mode, v.flows,
      h('td', {}, h('div', { class: 'sparks' }, ...v.sparks.map((s) => s.el))), h('td', { class: 'totals muted' }, v.totals));
  }

  /** "db:5432 (rules see 127.0.0.20:5432)": an instance target is named with the port it reaches. */
  function outboundTarget(o) {
    const port = o.as.slice(o.as.lastIndexOf(':') + 1);
    return `${o.to.includes(':') ? o.to : `${o.to}:${port}`} (rules see ${o.as})`;
  }

  function renderInstances() {
    const list = $('#instance-list');
    const live = new Set();
    const cards = instances.map((inst) => {
      const rows = [
        ...inst.services.map((s) => { live.add(lkey(s.protocol, inst.address, s.listenPort)); return listenerRow(inst, 'service', s.protocol, s.port, s.listenPort, s.backend); }),
        ...inst.outbound.map((o) => { live.add(lkey(o.protocol, inst.address, o.port)); return listenerRow(inst, 'outbound', o.protocol, o.port, o.port, outboundTarget(o)); }),
      ];
      const head = h('tr', {}, ...['listener', 'backend', 'filter', 'open', 'last minute', 'totals'].map((t) => h('th', { scope: 'col', text: t })));
      return h('article', { class: 'card', 'aria-label': `instance ${inst.name}` },
        h('h3', {}, `${inst.name} `, h('span', { class: 'muted mono', text: inst.instanceId })),
        h('p', { class: 'meta' }, 'address ', h('code', { text: inst.address }), inst.address6 ? [' and ', h('code', { text: inst.address6 })] : null,
          ' · groups ', ...inst.securityGroups.flatMap((g, i) => [i ? ', ' : '', h('a', { href: `#group-${g}`, class: 'mono', text: g })])),
        rows.length ? h('table', {}, h('thead', {}, head), h('tbody', {}, rows)) : h('p', { class: 'muted', text: 'no services, no outbound entries' }));
    });
    for (const k of [...listenerViews.keys()]) if (!live.has(k)) listenerViews.delete(k);
    list.replaceChildren(...cards);
    if (lastStatus) applyStatus(lastStatus, false);
  }

  let lastStatus = null;
  let lastStatusAt = 0;
  function applyStatus(st, tick) {
    const now = performance.now();
    const dtS = lastStatusAt ? Math.max(0.2, (now - lastStatusAt) / 1000) : 1;
    if (tick) lastStatusAt = now;
    lastStatus = st;
    setText($('#summary'), `policy v${st.policyVersion} · kernel filter ${st.nativeFilter ? 'on' : 'OFF'} · refusal ${st.refusal === 'raw' ? 'exact' : 'fallback (reset)'} · conntrack ${st.conntrack.entries}/${st.conntrack.max}`);
    let modelChanged = false;
    for (const l of st.listeners) {
      const v = listenerViews.get(lkey(l.protocol, l.address, l.listenPort));
      if (!v) { modelChanged = true; continue; }
      const state = `${l.backendUp}|${l.backend}|${l.backendAddress}|${l.filter}|${l.nativeFilter}`;
      if (v.state !== state) {
        v.state = state;
        // A backend given by name shows the address flows go to (or that the name did not resolve).
        const via = l.backendAddress === undefined ? '' : l.backendAddress === null ? ' (does not resolve)' : ` (${l.backendAddress})`;
        v.backend.replaceChildren(badge(l.backendUp ? 'up' : 'down'), ' ', h('span', { class: 'mono muted', text: l.backend + via }));
        v.mode.replaceChildren(badge(l.filter, l.filter === 'rules' ? 'mode' : 'down'), l.nativeFilter ? '' : ' userland');
      }
      setText(v.totals, `${l.accepted} accepted · ${l.rejected} rejected\n${l.refused} refused · ${fmtBytes(l.bytesIn + l.bytesOut)}`);
      setText(v.flows, String(l.flows));
      if (!tick) continue;
      if (v.last) {
        const push = (arr, x) => { arr.push(Math.max(0, x)); if (arr.length > HISTORY) arr.shift(); };
        push(v.hist.flows, (l.accepted - v.last.accepted) / dtS);
        push(v.hist.bytes, (l.bytesIn + l.bytesOut - v.last.bytes) / dtS);
        push(v.hist.rejects, (l.rejected - v.last.rejected) / dtS);
      }
      v.last = { accepted: l.accepted, rejected: l.rejected, bytes: l.bytesIn + l.bytesOut };
      drawSpark(v.sparks[0], v.hist.flows, fmtRate);
      drawSpark(v.sparks[1], v.hist.bytes, (x) => `${fmtBytes(x)}`);
      drawSpark(v.sparks[2], v.hist.rejects, fmtRate);
    }
    if (modelChanged || st.policyVersion !== shownPolicy) { shownPolicy = st.policyVersion; void loadModel(); }
  }
  let shownPolicy = -1;

  async function pollStatus() {
    for (;;) {
      try { applyStatus(await getJson('/v1/status'), true); } catch (e) { $('#summary').textContent = `daemon unreachable: ${e.message}`; }
      await sleep(1000);
    }
  }

  // ---- Rules: groups and their rules, authorize / revoke through the EC2 API --------------

  // A rule's own group is its groupId unless the peer is a group (ruleJson spreads the peer last).
  const peerText = (r) => r.cidr ?? r.prefixListId ?? r.groupId ?? '';
  const portText = (r) => (r.protocol === 'all' || r.fromPort === null || r.fromPort === undefined ? 'all'
    : r.protocol.startsWith('icmp') ? `type ${r.fromPort} code ${r.toPort}` : r.fromPort === r.toPort ? String(r.fromPort)
      : r.fromPort === 0 && r.toPort === 65535 ? 'all' : `${r.fromPort}-${r.toPort}`);

  function ruleTable(g, dir, rules, msg) {
    const head = h('tr', {}, ...['protocol', 'ports', dir === 'ingress' ? 'source' : 'destination', 'description', 'rule id', ''].map((t) => h('th', { scope: 'col', text: t })));
    const rows = rules.map((r) => h('tr', {},
      h('td', { text: r.protocol }), h('td', { text: portText(r) }), h('td', { text: peerText(r) }),
      h('td', { class: 'muted', text: r.description ?? '' }), h('td', { class: 'mono', text: r.ruleId }),
      h('td', {}, h('button', {
        type: 'button', class: 'danger', 'aria-label': `revoke ${r.ruleId} (${r.protocol} ${portText(r)} ${peerText(r)})`, text: 'Revoke',
        onclick: (ev) => revoke(g, dir, r, msg, ev.currentTarget),
      }))));
    return h('table', { class: 'grid', 'aria-label': `${g.groupId} ${dir === 'ingress' ? 'inbound' : 'outbound'} rules` },
      h('thead', {}, head), h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 6, class: 'muted', text: dir === 'ingress' ? 'no inbound rules: all inbound traffic is denied' : 'no outbound rules: all outbound traffic is denied' }))));
  }

  async function revoke(g, dir, r, msg, btn) {
    btn.disabled = true;
    try {
      await ec2({ Action: dir === 'ingress' ? 'RevokeSecurityGroupIngress' : 'RevokeSecurityGroupEgress', GroupId: g.groupId, 'SecurityGroupRuleId.1': r.ruleId });
      showMsg(msg, 'ok', `revoked ${r.ruleId}: it no longer applies to new flows`);
      await loadModel();
    } catch (e) { btn.disabled = false; showMsg(msg, 'error', `${e.code}: ${e.message}`); }
  }
  function showMsg(el, kind, text) {
    el.replaceChildren(h('div', { class: kind, role: kind === 'error' ? 'alert' : 'status', text }));
  }

  function ruleForm(g, msg) {
    const f = h('form', { class: 'form-row', 'data-group': g.groupId, 'aria-label': `add a rule to ${g.groupId}` },
      h('label', {}, 'Direction ', h('select', { name: 'direction' }, h('option', { value: 'ingress', text: 'inbound' }), h('option', { value: 'egress', text: 'outbound' }))),
      h('label', {}, 'Protocol ', h('select', { name: 'protocol' }, ...['tcp', 'udp', 'icmp', 'all'].map((p) => h('option', { text: p })))),
      h('label', {}, 'Ports ', h('input', { name: 'ports', size: 10, placeholder: '8080 or 8000-8100', autocomplete: 'off' })),
      h('label', {}, 'Peer ', h('input', { name: 'peer', size: 18, placeholder: '127.0.0.5/32, sg-…, pl-…', autocomplete: 'off' })),
      h('label', {}, 'Description ', h('input', { name: 'description', size: 18, autocomplete: 'off' })),
      h('button', { type: 'submit', text: 'Authorize' }));
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const fd = new FormData(f);
      const dir = String(fd.get('direction'));
      const proto = String(fd.get('protocol'));
      const ports = String(fd.get('ports') ?? '').trim();
      let peer = String(fd.get('peer') ?? '').trim();
      const desc = String(fd.get('description') ?? '').trim();
      const p = { Action: dir === 'ingress' ? 'AuthorizeSecurityGroupIngress' : 'AuthorizeSecurityGroupEgress', GroupId: g.groupId,
        'IpPermissions.1.IpProtocol': proto === 'all' ? '-1' : proto };
      if (proto !== 'all') {
        const m = /^(-?\d+)(?:\s*-\s*(-?\d+))?$/.exec(ports);
        if (ports === '' && proto.startsWith('icmp')) { p['IpPermissions.1.FromPort'] = '-1'; p['IpPermissions.1.ToPort'] = '-1'; }
        else if (ports === 'all' || ports === '') { p['IpPermissions.1.FromPort'] = '0'; p['IpPermissions.1.ToPort'] = '65535'; }
        else if (m) { p['IpPermissions.1.FromPort'] = m[1]; p['IpPermissions.1.ToPort'] = m[2] ?? m[1]; }
        else { p['IpPermissions.1.FromPort'] = ports; p['IpPermissions.1.ToPort'] = ports; }   // the API names the error
      }
      let field;
      if (/^sg-/.test(peer) || (!/[./:]/.test(peer) && peer !== '' && !/^pl-/.test(peer))) field = 'UserIdGroupPairs.1.GroupId';
      else if (/^pl-/.test(peer)) field = 'PrefixListIds.1.PrefixListId';
      else if (peer.includes(':')) field = 'Ipv6Ranges.1.CidrIpv6';
      else { field = 'IpRanges.1.CidrIp'; if (/^\d+\.\d+\.\d+\.\d+$/.test(peer)) peer += '/32'; }
      if (field === 'UserIdGroupPairs.1.GroupId' && !/^sg-/.test(peer)) field = 'UserIdGroupPairs.1.GroupName';
      p[`IpPermissions.1.${field}`] = peer;
      if (desc) p[`IpPermissions.1.${field.replace(/\.[^.]+$/, '.Description')}`] = desc;
      const btn = /** @type {HTMLButtonElement} */ (f.querySelector('button[type=submit]'));
      btn.disabled = true;
      try {
        const doc = await ec2(p);
        const id = doc.querySelector('securityGroupRuleId')?.textContent ?? '';
        showMsg(msg, 'ok', `authorized ${id}: ${proto} ${ports || 'all'} ${dir === 'ingress' ? 'from' : 'to'} ${peer}; new flows see it now`);
        await loadModel();
      } catch (e) { showMsg(msg, 'error', `${e.code}: ${e.message}`); }
      finally { btn.disabled = false; }
    });
    return f;
  }

  function renderGroups() {
    const wasOpen = new Set([...document.querySelectorAll('#group-list details[open]')].map((d) => d.getAttribute('data-group')));
    // The message and the form of a group are kept across redraws: what was typed stays.
    const msgs = new Map([...document.querySelectorAll('#group-list .msg')].map((m) => [m.getAttribute('data-group'), m]));
    const forms = new Map([...document.querySelectorAll('#group-list form')].map((f) => [f.getAttribute('data-group'), f]));
    $('#group-list').replaceChildren(...groups.map((g) => {
      const msg = msgs.get(g.groupId) ?? h('div', { class: 'msg', 'data-group': g.groupId, 'aria-live': 'polite' });
      const users = instances.filter((i) => i.securityGroups.includes(g.groupId)).map((i) => i.name);
      return h('div', { class: 'group', id: `group-${g.groupId}` },
        h('h3', {}, h('span', { class: 'mono', text: g.groupId }), ` ${g.groupName ?? ''} `, h('span', { class: 'muted', text: `${g.description ?? ''}${users.length ? ` · on ${users.join(', ')}` : ''}` })),
        h('h4', { class: 'sr-only', text: 'inbound' }), ruleTable(g, 'ingress', g.ingress, msg),
        h('details', { 'data-group': g.groupId, open: wasOpen.has(g.groupId) },
          h('summary', { text: `outbound rules (${g.egress.length})` }), ruleTable(g, 'egress', g.egress, msg)),
        forms.get(g.groupId) ?? ruleForm(g, msg), msg);
    }));
  }

  // ---- Explain ------------------------------------------------------------------------------

  async function explain(q) {
    const res = await api('POST', '/v1/explain', JSON.stringify(q));
    const j = await res.json();
    if (!res.ok) throw Object.assign(new Error(j.message ?? `HTTP ${res.status}`), { code: j.error });
    return j;
  }
  function renderExplain(r) {
    const checks = r.checks.map((c) => h('div', {},
      h('h4', {}, badge(c.decision), ' ', `${c.layer === 'nacl' ? `network ACL ${c.networkAclId ?? ''} (${c.path ?? ''})` : 'security groups'} · ${c.instance ?? c.subnet ?? ''} ${c.direction}`,
        c.decision === 'allow' && c.tracked === false ? ' · untracked' : ''),
      c.matched?.length ? h('ul', {}, ...c.matched.map((m) => h('li', {}, 'matched ', h('code', { text: `${m.groupId} ${m.ruleId}` }), ` via ${m.via}`))) : null,
      c.ruleNumber !== undefined ? h('p', { text: `rule ${c.ruleNumber}: ${c.action ?? ''}` }) : null,
      c.nearMisses?.length ? h('ul', {}, ...c.nearMisses.map((m) => h('li', {}, 'near miss ', h('code', { text: `${m.groupId} ${m.ruleId}` }), ` (${m.rule}): differs in ${m.respect}`))) : null,
      c.decision === 'deny' && !c.nearMisses?.length && c.layer !== 'nacl' ? h('p', { class: 'muted', text: 'no rule comes close' }) : null));
    return h('div', { class: 'explain' },
      h('p', {}, badge(r.decision), ' ', h('strong', { text: r.reason })),
      h('p', { class: 'muted', text: `${r.protocol}${r.port !== null && r.port !== undefined ? `/${r.port}` : ''} from ${r.source}${r.sourceAppearsAs ? ` (rules see ${r.sourceAppearsAs})` : ''} to ${r.destination}${r.destinationAppearsAs ? ` (rules see ${r.destinationAppearsAs})` : ''}` }),
      ...checks);
  }
  $('#explain-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = /** @type {HTMLFormElement} */ (ev.currentTarget);
    const fd = new FormData(f);
    const port = String(fd.get('port') ?? '').trim();
    const out = $('#explain-result');
    try {
      const r = await explain({ from: String(fd.get('from')).trim(), to: String(fd.get('to')).trim(), protocol: String(fd.get('protocol')), ...(port ? { port: Number(port) } : {}) });
      out.replaceChildren(renderExplain(r));
    } catch (e) { out.replaceChildren(h('div', { class: 'error', role: 'alert', text: `${e.code ?? 'Error'}: ${e.message}` })); }
  });

  /** The explain query for a flow event: the rules' view of it (rule port, not listen port). */
  function explainQueryOf(e) {
    const inst = instances.find((i) => i.name === e.instance);
    if (e.direction === 'ingress') {
      const svc = inst?.services.find((s) => s.protocol === e.protocol && s.listenPort === e.dstPort);
      return { from: e.src, to: e.instance, protocol: e.protocol, port: svc ? svc.port : e.dstPort };
    }
    const o = inst?.outbound.find((x) => x.protocol === e.protocol && x.port === e.dstPort);
    if (!o) return null;
    const i = o.as.lastIndexOf(':');
    return { from: e.instance, to: o.to.includes(':') ? o.as.slice(0, i) : o.to, protocol: e.protocol, port: Number(o.as.slice(i + 1)) };
  }

  // ---- Flow stream ------------------------------------------------------------------------

  /** @type {any[]} */ const ring = [];
  let seq = 0, received = 0, lost = 0, paused = false, dirty = false, renderTimer = 0;
  let expandedSeq = -1;
  let shownUpTo = Infinity;    // paused: the newest event shown, so that rows hold still
  let renderedSeq = 0;         // the newest event when the table was last drawn
  const rateWindow = [];       // [time, count] per second
  const types = new Set(['open', 'close', 'reject', 'refuse', 'cut', 'expire']);
  let filterText = '';
  // The live list: one <li> per event holding a badge and ONE text node with fixed-width columns
  // (monospace). A table of 8 cells per row cost several times the layout per redraw, which on a
  // busy machine turned into tasks over 200 ms (test/control/ui-load.test.ts).
  const list = /** @type {HTMLOListElement} */ ($('#flow-list'));
  const pool = [];             // reused rows: { tr, text, badge, seq, ev }
  const detailTr = h('li', { class: 'detail' }, h('div'));
  // The column heads, in the rows' widths: time 12+1, the badge 8ch, then the text's columns.
  $('#flow-head').textContent = `${'time'.padEnd(13)}${'decision'.padEnd(8)} ${'proto'.padEnd(5)} ${'instance'.padEnd(10)} ${'dir'.padEnd(7)} ${'source'.padEnd(22)} ${'destination'.padEnd(22)} detail`;

  function onEvent(e) {
    e.seq = ++seq;
    received++;
    ring.push(e);
    if (ring.length >= RING * 2) ring.splice(0, ring.length - RING);   // amortized: one move per RING events
    if (!paused) schedule();
  }
  function schedule() {
    dirty = true;
    if (renderTimer) return;
    renderTimer = window.setTimeout(() => { renderTimer = 0; requestAnimationFrame(renderFlows); }, RENDER_MS);
  }
  function matches(e) {
    if (!types.has(e.type)) return false;
    if (!filterText) return true;
    if (e.text === undefined) e.text = `${e.type} ${e.protocol} ${e.instance} ${e.direction} ${e.src}:${e.srcPort} ${e.dst}:${e.dstPort} ${e.reason ?? ''}`.toLowerCase();
    return filterText.split(/\s+/).every((w) => e.text.includes(w));
  }
  function rowFor(i) {
    while (pool.length <= i) {
      const time = document.createTextNode('');
      const b = h('span', { class: 'badge' });
      const text = document.createTextNode('');
      const tr = h('li', { class: 'ev', tabindex: 0, 'aria-expanded': 'false' }, time, b, text);
      const row = { tr, time, text, badge: b, seq: -1, ev: null };
      tr.addEventListener('click', () => toggle(row));
      tr.addEventListener('keydown', (k) => {
        if (k.key === 'Enter' || k.key === ' ') { k.preventDefault(); toggle(row); }
        else if (k.key === 'ArrowDown' || k.key === 'ArrowUp') {
          k.preventDefault();
          const j = pool.indexOf(row) + (k.key === 'ArrowDown' ? 1 : -1);
          if (pool[j]?.tr.isConnected) pool[j].tr.focus();
        }
      });
      pool.push(row);
    }
    return pool[i];
  }
  function renderFlows() {
    if (!dirty) return;
    dirty = false;
    if (!paused) renderedSeq = seq;
    let n = 0;
    const maxRows = paused ? PAUSED_ROWS : LIVE_ROWS;
    for (let i = ring.length - 1; i >= 0 && n < maxRows; i--) {
      const e = ring[i];
      if (e.seq > shownUpTo || !matches(e)) continue;
      const row = rowFor(n++);
      if (row.seq !== e.seq) {
        row.seq = e.seq; row.ev = e;
        row.time.data = e.time.slice(11, 23) + ' ';
        row.badge.className = `badge b-${e.type}`;
        row.badge.textContent = e.type;
        row.text.data = ` ${e.protocol.padEnd(5)} ${e.instance.padEnd(10)} ${e.direction.padEnd(7)} ${hostPort(e.src, e.srcPort).padEnd(22)} ${hostPort(e.dst, e.dstPort).padEnd(22)} `
          + (e.reason ?? (e.bytesIn !== undefined ? `in ${fmtBytes(e.bytesIn)} · out ${fmtBytes(e.bytesOut)}` : e.tracked === false ? 'untracked' : ''));
        row.tr.setAttribute('aria-expanded', String(e.seq === expandedSeq));
      }
    }
    // Attach the rows in order (appendChild of a node already in place is a no-op for layout).
    const want = pool.slice(0, n).map((r) => r.tr);
    const open = pool.slice(0, n).find((r) => r.seq === expandedSeq);
    if (open) want.splice(want.indexOf(open.tr) + 1, 0, detailTr);
    const have = list.children;
    let same = have.length === want.length;
    for (let i = 0; same && i < want.length; i++) same = have[i] === want[i];
    if (!same) list.replaceChildren(...want);
    updateCount();
  }
  function updateCount() {
    const now = Date.now();
    rateWindow.push([now, received]);
    while (rateWindow.length > 2 && now - rateWindow[0][0] > 3000) rateWindow.shift();
    const [t0, c0] = rateWindow[0];
    const rate = now > t0 ? ((received - c0) * 1000) / (now - t0) : 0;
    setText($('#flow-count'), `${received} events · ${fmtRate(rate)}/s${lost ? ` · ${lost} dropped by the daemon (this tab was too slow)` : ''}${paused ? ' · paused' : ''}`);
  }
  setInterval(() => { if (paused) updateCount(); }, 1000);

  async function toggle(row) {
    if (row.seq === expandedSeq) { collapse(); return; }
    expandedSeq = row.seq;
    setPaused(true);
    for (const r of pool) r.tr.setAttribute('aria-expanded', String(r.seq === expandedSeq));
    const td = detailTr.firstElementChild;
    const e = row.ev;
    td.replaceChildren(h('p', { class: 'muted', text: 'explaining…' }));
    dirty = true; renderFlows();
    const q = explainQueryOf(e);
    const want = expandedSeq;
    try {
      if (!q) throw new Error('no outbound entry of this instance matches the flow');
      const r = await explain(q);
      if (expandedSeq !== want) return;
      td.replaceChildren(h('p', { class: 'muted' }, `${e.type}${e.reason ? ` (${reasonText(e.reason)})` : ''} at ${e.time}; the rules now say:`), renderExplain(r));
    } catch (err) {
      if (expandedSeq === want) td.replaceChildren(h('div', { class: 'error', role: 'alert', text: `${err.code ?? 'Error'}: ${err.message}` }));
    }
  }
  function reasonText(r) {
    return ({ 'kernel-filter': 'the SYN was dropped by the kernel socket filter: the client timed out', 'backend-down': 'allowed, but nothing listens behind it: refused',
      'userland-reset': 'denied; no exact kernel filter here, so it was reset', 'untracked-revoked': 'untracked flow whose rule was revoked: cut',
      'conntrack-full': 'the conntrack table was full: dropped', idle: 'idle timeout' })[r] ?? r;
  }
  function collapse() {
    expandedSeq = -1;
    for (const r of pool) r.tr.setAttribute('aria-expanded', 'false');
    dirty = true; renderFlows();
  }
  function setPaused(p) {
    paused = p;
    shownUpTo = p ? renderedSeq : Infinity;
    const b = $('#flow-pause');
    b.setAttribute('aria-pressed', String(p));
    b.textContent = p ? 'Resume' : 'Pause';
    if (!p) { if (expandedSeq !== -1) expandedSeq = -1; schedule(); }
    updateCount();
  }
  $('#flow-pause').addEventListener('click', () => setPaused(!paused));
  $('#flow-clear').addEventListener('click', () => { ring.length = 0; expandedSeq = -1; dirty = true; renderFlows(); });
  const filterInput = /** @type {HTMLInputElement} */ ($('#flow-filter'));
  filterInput.addEventListener('input', () => { filterText = filterInput.value.trim().toLowerCase(); expandedSeq = -1; dirty = true; renderFlows(); });
  for (const cb of document.querySelectorAll('#flows fieldset input')) {
    cb.addEventListener('change', () => {
      const i = /** @type {HTMLInputElement} */ (cb);
      if (i.checked) types.add(i.value); else types.delete(i.value);
      dirty = true; renderFlows();
    });
  }
  document.addEventListener('keydown', (k) => {
    if (k.key === 'Escape' && expandedSeq !== -1 && !$('#creds-dialog').hasAttribute('open')) {
      const row = pool.find((r) => r.seq === expandedSeq);
      collapse();
      row?.tr.focus();
      return;
    }
    if (k.key === '/' && !(k.target instanceof HTMLInputElement || k.target instanceof HTMLSelectElement)) { k.preventDefault(); filterInput.focus(); }
  });

  /** Reads /v1/events (server-sent events) with fetch, so that signed requests work too. */
  let streamGen = 0;
  function restartStream() { streamGen++; void stream(streamGen); }
  async function stream(gen) {
    const state = $('#stream-state');
    for (let attempt = 0; gen === streamGen; attempt++) {
      try {
        const res = await api('GET', '/v1/events');
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        state.textContent = 'live';
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        while (gen === streamGen) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          const blocks = buf.split('\n\n');
          buf = blocks.pop() ?? '';
          for (const b of blocks) {
            const nl = b.indexOf('\ndata: ');
            if (nl < 0) continue;
            const data = b.slice(nl + 7);
            if (b.startsWith('event: flow')) onEvent(JSON.parse(data));
            else if (b.startsWith('event: lost')) lost += JSON.parse(data).count;
          }
        }
        if (gen !== streamGen) { void reader.cancel(); return; }
      } catch (e) { state.textContent = `stream: ${e.message}; retrying`; }
      state.textContent = 'reconnecting…';
      await sleep(Math.min(5000, 500 * (attempt + 1)));
    }
  }

  // ---- Conntrack: server-side paging and sorting ------------------------------------------

  const CT_COLS = [['protocol', 'proto'], ['instance', 'instance'], ['direction', 'dir'], ['state', 'state'], ['tracked', 'tracked'],
    ['src', 'source'], ['srcPort', 'sport'], ['dst', 'destination'], ['dstPort', 'dport'], ['bytesIn', 'in'], ['bytesOut', 'out'],
    ['ageSeconds', 'age'], ['idleSeconds', 'idle'], ['expiresInSeconds', 'expires']];
  const ct = { offset: 0, sort: 'ageSeconds', order: 'asc', total: 0, busy: false, again: false };
  function ctHead() {
    $('#ct-table thead tr').replaceChildren(...CT_COLS.map(([k, label]) => h('th', {
      scope: 'col', 'aria-sort': ct.sort === k ? (ct.order === 'asc' ? 'ascending' : 'descending') : 'none',
    }, h('button', { type: 'button', text: label, title: `sort by ${k}`, onclick: () => {
      if (ct.sort === k) ct.order = ct.order === 'asc' ? 'desc' : 'asc'; else { ct.sort = k; ct.order = 'asc'; }
      ct.offset = 0; ctHead(); void ctLoad();
    } }))));
  }
  const ctLimit = () => Number(/** @type {HTMLSelectElement} */ ($('#ct-limit')).value);
  async function ctLoad() {
    if (ct.busy) { ct.again = true; return; }     // a click during a load: load again after it
    ct.busy = true;
    ct.again = false;
    const q = new URLSearchParams({ limit: String(ctLimit()), offset: String(ct.offset), sort: ct.sort, order: ct.order });
    const text = /** @type {HTMLInputElement} */ ($('#ct-filter')).value.trim();
    const inst = /** @type {HTMLSelectElement} */ ($('#ct-instance')).value;
    if (text) q.set('q', text);
    if (inst) q.set('instance', inst);
    try {
      const page = await getJson(`/v1/conntrack?${q}`);
      ct.total = page.total;
      if (ct.offset >= page.total && page.total > 0) { ct.offset = Math.floor((page.total - 1) / ctLimit()) * ctLimit(); ct.busy = false; return ctLoad(); }
      $('#ct-table tbody').replaceChildren(...(page.entries.length ? page.entries.map((e) => h('tr', {},
        h('td', { text: e.protocol }), h('td', { text: e.instance }), h('td', { text: e.direction }), h('td', { text: e.state }),
        h('td', { text: e.tracked ? 'yes' : 'no' }), h('td', { text: e.src }), h('td', { text: e.srcPort }), h('td', { text: e.dst }),
        h('td', { text: e.dstPort }), h('td', { text: fmtBytes(e.bytesIn) }), h('td', { text: fmtBytes(e.bytesOut) }),
        h('td', { text: `${e.ageSeconds}s` }), h('td', { text: `${e.idleSeconds}s` }), h('td', { text: `${e.expiresInSeconds}s` })))
        : [h('tr', {}, h('td', { colspan: CT_COLS.length, class: 'muted', text: 'no tracked flows' + (text || inst ? ' match' : '') }))]));
      const pages = Math.max(1, Math.ceil(page.total / ctLimit()));
      $('#ct-page').textContent = `page ${Math.floor(ct.offset / ctLimit()) + 1} of ${pages} · ${page.total} entries`;
      /** @type {HTMLButtonElement} */ ($('#ct-prev')).disabled = /** @type {HTMLButtonElement} */ ($('#ct-first')).disabled = ct.offset === 0;
      /** @type {HTMLButtonElement} */ ($('#ct-next')).disabled = /** @type {HTMLButtonElement} */ ($('#ct-last')).disabled = ct.offset + ctLimit() >= page.total;
    } catch (e) {
      $('#ct-page').textContent = `cannot read conntrack: ${e.message}`;
    } finally { ct.busy = false; }
    if (ct.again) return ctLoad();
  }
  const ctGo = (off) => { ct.offset = Math.max(0, off); void ctLoad(); };
  $('#ct-first').addEventListener('click', () => ctGo(0));
  $('#ct-prev').addEventListener('click', () => ctGo(ct.offset - ctLimit()));
  $('#ct-next').addEventListener('click', () => ctGo(ct.offset + ctLimit()));
  $('#ct-last').addEventListener('click', () => ctGo(Math.floor(Math.max(0, ct.total - 1) / ctLimit()) * ctLimit()));
  $('#ct-refresh').addEventListener('click', () => void ctLoad());
  $('#ct-limit').addEventListener('change', () => ctGo(0));
  $('#ct-instance').addEventListener('change', () => ctGo(0));
  let ctFilterTimer = 0;
  $('#ct-filter').addEventListener('input', () => { clearTimeout(ctFilterTimer); ctFilterTimer = window.setTimeout(() => ctGo(0), 250); });
  // Auto-refresh every 2 s, or less often when a page costs the daemon more (a sorted page of a
  // 100k-entry table takes it tens of ms): at most a tenth of the time spent answering.
  let ctNextAt = 0;
  setInterval(() => {
    if (document.visibilityState !== 'visible' || !/** @type {HTMLInputElement} */ ($('#ct-auto')).checked || performance.now() < ctNextAt) return;
    const t0 = performance.now();
    void ctLoad().then(() => { ctNextAt = performance.now() + Math.max(0, 10 * (performance.now() - t0) - 2000); });
    ctNextAt = Infinity;
  }, 2000);

  // ---- Start ------------------------------------------------------------------------------
  ctHead();
  void loadModel().then(() => { void ctLoad(); });
  restartStream();
  void pollStatus();
})();
