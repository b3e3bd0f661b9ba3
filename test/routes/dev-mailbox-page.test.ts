/** Issue 7: the development mailbox page is styled (its stylesheet exists) and built for a phone. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeWithApp } from '../helpers/app.ts';

describeWithApp('development mailbox page', (suite) => {
  test('links a stylesheet that is served, with a phone viewport and wrapping mail bodies', async (t) => {
    const { app } = await suite.build(t, { appOptions: { devMailbox: true } });
    const page = await app.inject({ method: 'GET', url: '/dev/mailbox' });
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /<meta name="viewport" content="width=device-width,initial-scale=1">/);
    const hrefs = [...page.body.matchAll(/<link rel="stylesheet" href="([^"]+)">/g)].map((m) => m[1]!);
    assert.ok(hrefs.length > 0, 'a stylesheet is linked');
    for (const href of hrefs) {
      const css = await app.inject({ method: 'GET', url: href });
      assert.equal(css.statusCode, 200, `${href} is served`);
      assert.match(String(css.headers['content-type']), /^text\/css/);
      assert.match(css.body, /\.dev-mailbox pre \{[^}]*white-space: pre-wrap/, 'long links wrap instead of scrolling sideways');
    }
  });
});
