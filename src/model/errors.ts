// The error types every layer throws. Callers and tests match `code`, never message text.
// Messages name what, where, the offending value and what would be valid.

export class SgemuError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A problem in a config file, located by path and 1-based line:column. */
export class ConfigError extends SgemuError {
  readonly path: string;
  readonly line: number;
  readonly column: number;
  constructor(code: string, path: string, line: number, column: number, message: string) {
    super(code, message);
    this.path = path;
    this.line = line;
    this.column = column;
  }
  /** `CODE path line:col message`, the format `sgemu check` prints. */
  format(): string {
    return `${this.code} ${this.path || '.'} ${this.line}:${this.column} ${this.message}`;
  }
  toJSON(): { code: string; path: string; line: number; column: number; message: string } {
    return { code: this.code, path: this.path, line: this.line, column: this.column, message: this.message };
  }
}

/** An error as the EC2 API returns it: AWS error code and HTTP status. */
export class AwsError extends SgemuError {
  readonly status: number;
  constructor(code: string, message: string, status = 400) {
    super(code, message);
    this.status = status;
  }
}

/** Bad command-line input: exit 2. */
export class UsageError extends SgemuError {
  constructor(message: string, code = 'Usage') {
    super(code, message);
  }
}

/** A failed syscall in native code. */
export class NativeError extends SgemuError {
  readonly syscall: string;
  readonly errno: number;
  constructor(syscall: string, errno: number, code: string, message: string) {
    super(code, message);
    this.syscall = syscall;
    this.errno = errno;
  }
}

/** Thrown by config loading when there is at least one error; carries all of them. */
export class ConfigErrors extends SgemuError {
  readonly errors: ConfigError[];
  constructor(errors: ConfigError[]) {
    super(errors[0]?.code ?? 'InvalidConfig', errors.map((e) => e.format()).join('\n'));
    this.errors = errors;
  }
}
