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
