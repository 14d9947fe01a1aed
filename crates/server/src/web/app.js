// Progressive enhancement: warn two minutes before an idle session ends, and
// let the user stay signed in. Everything works without it.
(function () {
  const idle = Number(document.body.dataset.idleSeconds || 0);
  const banner = document.getElementById('timeout-warning');
  const stay = document.getElementById('stay');
  if (!idle || !banner || !stay) return;
  const warnAfter = Math.max(idle - 120, Math.floor(idle / 2)) * 1000;
  let warnTimer, endTimer;
  function arm() {
    clearTimeout(warnTimer);
    clearTimeout(endTimer);
    banner.classList.add('hidden');
    warnTimer = setTimeout(() => banner.classList.remove('hidden'), warnAfter);
    endTimer = setTimeout(() => { window.location.href = '/login'; }, idle * 1000);
  }
  stay.addEventListener('click', async () => {
    // Any authenticated request is activity: it extends the idle timeout.
    const r = await fetch('/api/v1/me', { credentials: 'same-origin' });
    if (r.ok) arm(); else window.location.href = '/login';
  });
  arm();
})();

// Passkeys (WebAuthn): sign in with one instead of the authenticator code, and
// add one on the Passkeys page. Without this script, or in a browser without
// passkeys, the buttons stay hidden and the password and code work as always.
(function () {
  const supported = !!(window.PublicKeyCredential
    && PublicKeyCredential.parseRequestOptionsFromJSON && PublicKeyCredential.parseCreationOptionsFromJSON);
  const status = document.getElementById('passkey-status');
  function say(text) {
    if (!status) return;
    status.textContent = text;
    status.classList.remove('hidden');
  }
  async function post(url, body) {
    const r = await fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(data.error || `refused (${r.status})`);
    return data;
  }
  if (!supported) return;
  document.querySelectorAll('.js-only').forEach((e) => e.remove());

  const login = document.getElementById('passkey-login');
  if (login) {
    login.classList.remove('hidden');
    login.addEventListener('click', async () => {
      const form = login.form;
      if (!form.username.value || !form.password.value) {
        form.reportValidity();
        return;
      }
      login.disabled = true;
      try {
        const begun = await post('/login/passkey/begin', {});
        const options = PublicKeyCredential.parseRequestOptionsFromJSON(begun.options.publicKey);
        const answer = await navigator.credentials.get({ publicKey: options });
        const done = await post('/login/passkey/finish', {
          handle: begun.handle, answer: answer.toJSON(), username: form.username.value, password: form.password.value,
        });
        window.location.href = done.next;
      } catch (e) {
        say(e.message);
      } finally {
        login.disabled = false;
      }
    });
  }

  const add = document.getElementById('passkey-add');
  if (add) {
    add.classList.remove('hidden');
    add.addEventListener('click', async () => {
      const form = add.form;
      if (!form.reportValidity()) return;
      add.disabled = true;
      try {
        const csrf = form.csrf.value;
        const begun = await post('/me/passkeys/begin', { csrf, code: form.code.value });
        const options = PublicKeyCredential.parseCreationOptionsFromJSON(begun.options.publicKey);
        const answer = await navigator.credentials.create({ publicKey: options });
        const done = await post('/me/passkeys/finish', { csrf, handle: begun.handle, label: form.label.value, answer: answer.toJSON() });
        window.location.href = done.next;
      } catch (e) {
        say(e.message);
      } finally {
        add.disabled = false;
      }
    });
  }
})();
