/**
 * Environment variables that make a program load or run code other than its own (loader, interpreter,
 * package-manager and shell hooks), redirect where it reads its configuration from, or decide whom it
 * trusts on the network (CA bundles, proxies: with either, whoever the variable names can answer the
 * package downloads of `npx`/`uvx` with code of their own). A stdio spec's
 * `env` may not set them unless the operator names them in MCP_STDIO_ALLOWED_ENV: with any of them, an
 * allowed command line (`npx -y some-server`) runs whatever the variable points at.
 *
 * Names compare case-insensitively: npm reads `npm_config_*` in any case and Windows treats names so, and
 * no server needs a lower-case `ld_preload` to work. A trailing `*` matches any rest of the name.
 */
export const ENV_HOOK_PATTERNS: readonly string[] = Object.freeze([
  // Dynamic loaders (glibc, musl, macOS) and glibc's own module and tunable paths.
  'LD_*',
  'DYLD_*',
  'GCONV_PATH',
  'GETCONF_DIR',
  'GLIBC_TUNABLES',
  'LOCPATH',
  'NLSPATH',
  'MALLOC_*',
  'HOSTALIASES',
  'RESOLV_*',
  'LOCALDOMAIN',
  'RES_OPTIONS',
  'OPENSSL_*',
  // TLS trust: a CA the attacker holds makes their server trusted (OpenSSL even skips text before a PEM block,
  // so `SSL_CERT_FILE=/proc/self/environ` with the PEM in another variable works). Also the key log file,
  // which writes every TLS session key to disk. NODE_EXTRA_CA_CERTS, DENO_CERT, CARGO_HTTP_CAINFO,
  // PIP_CERT, GIT_SSL_CAINFO and npm's cafile fall under their family's prefix below.
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
  'SSLKEYLOGFILE',
  'NIX_SSL_CERT_FILE',
  'REQUESTS_CA_BUNDLE',
  'CURL_CA_BUNDLE',
  'AWS_CA_BUNDLE',
  'HTTPLIB2_CA_CERTS',
  'WEBSOCKET_CLIENT_CA_BUNDLE',
  'GRPC_DEFAULT_SSL_ROOTS_FILE_PATH',
  'CLOUDSDK_*',
  'GODEBUG',
  // Proxies: every request, package downloads included, goes through whoever the variable names; NO_PROXY
  // takes hosts out of the operator's proxy. Any case (curl reads `http_proxy` only in lower case).
  'HTTP_PROXY',
  'HTTPS_PROXY',
  'ALL_PROXY',
  'NO_PROXY',
  'FTP_PROXY',
  'WS_PROXY',
  'WSS_PROXY',
  'SOCKS_PROXY',
  'SOCKS5_PROXY',
  'GRPC_PROXY',
  'RSYNC_PROXY',
  'GLOBAL_AGENT_*',
  // Configuration files of HTTP clients (a `proxy` or `cacert` line in them does the same).
  'CURL_HOME',
  'WGETRC',
  // Where programs are found, and where they read their configuration.
  'PATH',
  'HOME',
  'XDG_*',
  'USERPROFILE',
  'APPDATA',
  'LOCALAPPDATA',
  // Node.js and its package managers (npx honours npm_config_call, npm_config_script_shell, …).
  'NODE_*',
  'NPM_CONFIG_*',
  'YARN_*',
  'PNPM_*',
  'COREPACK_*',
  'BUN_*',
  'DENO_*',
  'ELECTRON_RUN_AS_NODE',
  // Python, uv/uvx and pip.
  'PYTHON*',
  'VIRTUAL_ENV',
  'UV_*',
  'PIP_*',
  'PIPX_*',
  // Perl, Ruby, PHP, Lua, Tcl.
  'PERL*',
  'RUBY*',
  'GEM_*',
  'BUNDLE_*',
  'PHPRC',
  'PHP_INI_SCAN_DIR',
  'LUA_*',
  'TCLLIBPATH',
  // The JVM and .NET.
  'JAVA_*',
  '_JAVA_OPTIONS',
  'JDK_JAVA_OPTIONS',
  'CLASSPATH',
  'DOTNET_*',
  'CORECLR_*',
  'COR_*',
  // Go and Rust toolchains (`go run`, `cargo run`).
  'GOFLAGS',
  'GOTOOLCHAIN',
  'GOPROXY',
  'GOENV',
  'CARGO_*',
  'RUSTC*',
  'RUSTFLAGS',
  // Shells: startup files, exported functions, traced prompts, word splitting.
  'BASH_ENV',
  'BASH_FUNC_*',
  'BASHOPTS',
  'ENV',
  'SHELLOPTS',
  'SHELL',
  'PS4',
  'PROMPT_COMMAND',
  'IFS',
  'CDPATH',
  'GLOBIGNORE',
  'ZDOTDIR',
  // Git and SSH (GIT_SSH_COMMAND, GIT_CONFIG_*, GIT_ASKPASS, the worker user's ssh-agent …).
  'GIT_*',
  'SSH_*',
  // Programs that other programs start.
  'EDITOR',
  'VISUAL',
  'PAGER',
  'BROWSER',
]);

/** Variables of the families above that run nothing: common in MCP server configs, so not refused. */
export const ENV_HOOK_EXCEPTIONS: readonly string[] = Object.freeze([
  'NODE_ENV',
  'PYTHONUNBUFFERED',
  'PYTHONIOENCODING',
  'PYTHONUTF8',
  'PYTHONDONTWRITEBYTECODE',
]);

/** A portable variable name; anything else (`PATH=/x`, a NUL) could smuggle another variable into the environment. */
export const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Whether `name` matches one of `patterns` (exact, or a prefix ending in `*`), case-insensitively. */
export function matchesEnvPattern(name: string, patterns: readonly string[]): boolean {
  const upper = name.toUpperCase();
  return patterns.some((pattern) => {
    const p = pattern.toUpperCase();
    return p.endsWith('*') ? upper.startsWith(p.slice(0, -1)) : upper === p;
  });
}

/** Whether `name` is a loader, interpreter or configuration hook that the operator has not allowed. */
export function isForbiddenEnvName(name: string, allowed: readonly string[] = []): boolean {
  if (!ENV_NAME_RE.test(name)) return true;
  if (matchesEnvPattern(name, allowed)) return false;
  return matchesEnvPattern(name, ENV_HOOK_PATTERNS) && !matchesEnvPattern(name, ENV_HOOK_EXCEPTIONS);
}

/** Whether `name` belongs to a hook family (whatever the operator allowed): such a variable must not reach the sandbox launcher itself. */
export function isEnvHook(name: string): boolean {
  return !ENV_NAME_RE.test(name) || matchesEnvPattern(name, ENV_HOOK_PATTERNS);
}
