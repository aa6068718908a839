import { describe, expect, it } from 'vitest';
import { isEnvHook, isForbiddenEnvName } from './env-hooks.js';

describe('hook variables in a stdio spec env', () => {
  it.each([
    'NODE_OPTIONS',
    'NODE_PATH',
    'node_options',
    'LD_PRELOAD',
    'LD_LIBRARY_PATH',
    'DYLD_INSERT_LIBRARIES',
    'PATH',
    'Path',
    'HOME',
    'XDG_CONFIG_HOME',
    'PYTHONPATH',
    'PYTHONSTARTUP',
    'PERL5OPT',
    'PERLLIB',
    'RUBYOPT',
    'JAVA_TOOL_OPTIONS',
    '_JAVA_OPTIONS',
    'JDK_JAVA_OPTIONS',
    'BASH_ENV',
    'BASH_FUNC_ls%%',
    'ENV',
    'SHELLOPTS',
    'PS4',
    'IFS',
    'npm_config_call',
    'NPM_CONFIG_SCRIPT_SHELL',
    'GIT_SSH_COMMAND',
    'GIT_CONFIG_GLOBAL',
    'UV_INDEX_URL',
    'GCONV_PATH',
    'GLIBC_TUNABLES',
    'OPENSSL_CONF',
    // TLS trust and proxies (a CA or proxy of the attacker's answers `npx`/`uvx` downloads with their code).
    'SSL_CERT_FILE',
    'ssl_cert_dir',
    'SSLKEYLOGFILE',
    'REQUESTS_CA_BUNDLE',
    'CURL_CA_BUNDLE',
    'AWS_CA_BUNDLE',
    'NODE_EXTRA_CA_CERTS',
    'DENO_CERT',
    'CARGO_HTTP_CAINFO',
    'PIP_CERT',
    'GIT_SSL_CAINFO',
    'npm_config_cafile',
    'GRPC_DEFAULT_SSL_ROOTS_FILE_PATH',
    'HTTP_PROXY',
    'https_proxy',
    'HTTPS_PROXY',
    'all_proxy',
    'ALL_PROXY',
    'NO_PROXY',
    'no_proxy',
    'GLOBAL_AGENT_HTTP_PROXY',
    'CURL_HOME',
  ])('%s is refused', (name) => {
    expect(isForbiddenEnvName(name)).toBe(true);
  });

  it.each([
    'API_KEY',
    'GITHUB_PERSONAL_ACCESS_TOKEN',
    'NODE_ENV',
    'PYTHONUNBUFFERED',
    'LANG',
    'TZ',
    'CORS_ORIGIN',
    'DEBUG',
  ])('%s is allowed', (name) => {
    expect(isForbiddenEnvName(name)).toBe(false);
  });

  it('refuses names that could smuggle another variable, whatever is allowed', () => {
    for (const name of ['PATH=/tmp/evil', 'A=B', 'X\0Y', '', '1ABC', 'A B']) {
      expect(isForbiddenEnvName(name, ['*']), JSON.stringify(name)).toBe(true);
    }
  });

  it('lets the operator allow names and prefixes, case-insensitively', () => {
    expect(isForbiddenEnvName('NODE_EXTRA_CA_CERTS', ['NODE_EXTRA_CA_CERTS'])).toBe(false);
    expect(isForbiddenEnvName('node_extra_ca_certs', ['NODE_EXTRA_CA_CERTS'])).toBe(false);
    expect(isForbiddenEnvName('NODE_OPTIONS', ['NODE_EXTRA_CA_CERTS'])).toBe(true);
    expect(isForbiddenEnvName('UV_INDEX_URL', ['UV_*'])).toBe(false);
    expect(isForbiddenEnvName('https_proxy', ['HTTPS_PROXY'])).toBe(false);
    expect(isForbiddenEnvName('SSL_CERT_FILE', ['SSL_CERT_FILE'])).toBe(false);
  });

  it('knows a hook as a hook even when allowed (the sandbox launcher must not see it)', () => {
    expect(isEnvHook('LD_PRELOAD')).toBe(true);
    expect(isEnvHook('API_KEY')).toBe(false);
  });
});
