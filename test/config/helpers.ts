// Test helpers for config loading: collect ConfigErrors, and locate a needle in a YAML text so
// tests assert line:column without counting characters by hand.
import { loadConfigText } from '../../src/config/load.js';
import { ConfigError, ConfigErrors } from '../../src/model/errors.js';

export const FIXTURES = new URL('./fixtures/', import.meta.url).pathname;

/** The errors loading `text` throws; [] when it loads. Anything but ConfigErrors is rethrown. */
export function errorsOf(text: string, fileName = 'test.yaml'): ConfigError[] {
  try {
    loadConfigText(text, fileName);
    return [];
  } catch (e) {
    if (e instanceof ConfigErrors) return e.errors;
    throw e;
  }
}

/** 1-based line and column of the first occurrence of `needle` (after `after`, when given). */
export function at(text: string, needle: string, after = ''): { line: number; column: number } {
  const start = after ? text.indexOf(after) : 0;
  if (start < 0) throw new Error(`anchor ${after} not in text`);
  const i = text.indexOf(needle, start);
  if (i < 0) throw new Error(`needle ${needle} not in text`);
  const before = text.slice(0, i);
  const line = before.split('\n').length;
  return { line, column: i - before.lastIndexOf('\n') };
}
