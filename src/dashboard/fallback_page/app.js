new EventSource('api/events').addEventListener('state', (e) => {
  document.getElementById('state').textContent = JSON.stringify(JSON.parse(e.data), null, 2);
});
