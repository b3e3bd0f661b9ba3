import { test } from 'node:test';
import assert from 'node:assert/strict';
import { returnToOrigins, safeReturnTo } from '../../src/web/return-to.ts';
import { escapeHtml, html } from '../../src/web/html.ts';

const PUBLIC = 'https://auth.example.com';
const TRUSTED = ['https://app.example.com', 'http://127.0.0.1:9'];

test('return_to on the service itself or a trusted origin is kept', () => {
  assert.equal(safeReturnTo('https://app.example.com/after?x=1#top', PUBLIC, TRUSTED), 'https://app.example.com/after?x=1#top');
  assert.equal(safeReturnTo('http://127.0.0.1:9/', PUBLIC, TRUSTED), 'http://127.0.0.1:9/');
  assert.equal(safeReturnTo('https://auth.example.com/account', PUBLIC, TRUSTED), 'https://auth.example.com/account');
  assert.equal(safeReturnTo('/account', PUBLIC, TRUSTED), 'https://auth.example.com/account');
  assert.equal(safeReturnTo('HTTPS://APP.EXAMPLE.COM:443/x', PUBLIC, TRUSTED), 'https://app.example.com/x');
});

test('return_to anywhere else is ignored, whatever the trick', () => {
  const attacks = [
    'https://evil.example/',
    '//evil.example/',
    '/\\evil.example/',
    '\\\\evil.example',
    'https://app.example.com.evil.example/',
    'https://app.example.com@evil.example/',
    'https://user:pw@app.example.com/',
    'http://app.example.com/', // scheme is part of the origin
    'https://app.example.com:8443/',
    'javascript:alert(1)',
    'java\nscript:alert(1)',
    'data:text/html,<script>alert(1)</script>',
    'ftp://app.example.com/',
    ' https://evil.example/',
    'https://evil.example/' + 'a'.repeat(3000),
    '',
  ];
  for (const raw of attacks) assert.equal(safeReturnTo(raw, PUBLIC, TRUSTED), undefined, raw);
  assert.equal(safeReturnTo(['https://app.example.com/'], PUBLIC, TRUSTED), undefined);
  assert.equal(safeReturnTo(undefined, PUBLIC, TRUSTED), undefined);
});

test('returnToOrigins lists each origin once, the service first', () => {
  assert.deepEqual(returnToOrigins(PUBLIC, [...TRUSTED, PUBLIC]), [PUBLIC, ...TRUSTED]);
});

test('html escapes every interpolation and keeps nested fragments', () => {
  assert.equal(escapeHtml(`<a href="x" onclick='y'>&\``), '&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&#96;');
  const inner = html`<b>${'<i>'}</b>`;
  assert.equal(html`<p title="${'"><script>'}">${inner}${[html`<br>`, '<hr>']}${undefined}${false}</p>`.value,
    '<p title="&quot;&gt;&lt;script&gt;"><b>&lt;i&gt;</b><br>&lt;hr&gt;</p>');
});
