// The per-VM table: the rows of `ksm-agent vms --json`, in its order and columns. Exact values
// ride along in data-* attributes (the displayed text is rounded); text goes in with textContent
// only, so a VM name can never become markup.
import type { VmRow } from '../../../api-types.js';
import { formatBytes, formatCount } from './format.js';

function cell(tr: HTMLTableRowElement, text: string, numeric = false): void {
  const td = tr.insertCell();
  td.textContent = text;
  if (numeric) td.className = 'num';
}

export function drawTable(table: HTMLTableElement, rows: VmRow[]): void {
  const body = table.tBodies[0] as HTMLTableSectionElement;
  body.replaceChildren();
  for (const r of rows) {
    const tr = body.insertRow();
    tr.dataset.name = r.name;
    tr.dataset.pid = r.pid === null ? '' : String(r.pid);
    tr.dataset.ramBytes = r.ram_bytes === null ? '' : String(r.ram_bytes);
    tr.dataset.ksmPages = String(r.ksm_pages);
    tr.dataset.savedBytes = String(r.saved_bytes);
    tr.dataset.topPeer = r.top_peer?.name ?? '';
    tr.dataset.topPeerPages = r.top_peer === null ? '' : String(r.top_peer.pages);
    if (r.pid === null) tr.className = 'other';
    cell(tr, r.name);
    cell(tr, r.pid === null ? '' : String(r.pid), true);
    cell(tr, r.ram_bytes === null ? '' : formatBytes(r.ram_bytes), true);
    cell(tr, r.pid === null ? '' : formatCount(r.ksm_pages), true);
    cell(tr, formatBytes(r.saved_bytes), true);
    cell(tr, r.top_peer === null ? '' : `${r.top_peer.name} (${formatCount(r.top_peer.pages)} pages)`);
    cell(tr, [r.tenant === null ? '' : `tenant ${r.tenant}`, r.opted_out ? 'opted out' : '', r.error ?? ''].filter((x) => x !== '').join(', '));
  }
}
