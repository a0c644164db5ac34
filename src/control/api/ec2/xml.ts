// EC2 Query protocol responses: XML as EC2 sends it (reference §4.3, §4.4).
// Owns: escaping (and dropping characters XML 1.0 cannot carry at all), the success envelope
// `<{Op}Response xmlns=…><requestId>…`, list entries as `<item>`, and the error document with
// `RequestID` (capital ID, as EC2). Must not: know operations or the model.

export const EC2_XMLNS = 'http://ec2.amazonaws.com/doc/2016-11-15/';

// XML 1.0 Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]
// eslint-disable-next-line no-control-regex
const NOT_XML_CHAR = /[^\x09\x0A\x0D\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;

/** Text content only (we write no attribute from input), so quotes stay as they are. */
export function esc(s: string): string {
  return s.replace(NOT_XML_CHAR, '\uFFFD')
    .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** `<name>value</name>`, or '' when value is undefined. */
export function t(name: string, value: string | number | boolean | undefined | null): string {
  if (value === undefined || value === null) return '';
  return `<${name}>${esc(String(value))}</${name}>`;
}

/** `<name>…children…</name>` (children already XML). */
export function n(name: string, ...children: string[]): string {
  return `<${name}>${children.join('')}</${name}>`;
}

/** `<name><item>…</item>…</name>`: an EC2 list. */
export function items<T>(name: string, list: readonly T[], each: (x: T) => string): string {
  return `<${name}>${list.map((x) => `<item>${each(x)}</item>`).join('')}</${name}>`;
}

export function tagSet(tags: Record<string, string>): string {
  return items('tagSet', Object.entries(tags), ([k, v]) => t('key', k) + t('value', v));
}

export function successXml(action: string, requestId: string, body: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${EC2_XMLNS}">${t('requestId', requestId)}${body}</${action}Response>`;
}

export function errorXml(code: string, message: string, requestId: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>${t('Code', code)}${t('Message', message)}</Error></Errors>${t('RequestID', requestId)}</Response>`;
}
