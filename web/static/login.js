import {api, setToken} from "/ui/app.js";

const form = document.getElementById("login");
const message = document.getElementById("message");

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  message.textContent = "";
  message.className = "";
  try {
    // Logging in replaces whatever token was kept; a stale one sent along
    // would make the hub refuse the request.
    setToken("");
    const res = await api("/api/auth/login", {method: "POST", body: {
      username: document.getElementById("username").value,
      password: document.getElementById("password").value,
    }});
    setToken(res.token);
    // Back to the page that sent us here (a room), never to another site.
    const next = new URLSearchParams(location.search).get("next") || "/rooms";
    location.href = /^\/(?![\/\\])/.test(next) ? next : "/rooms";
  } catch (e) {
    message.className = "error";
    message.textContent = e.status === 404 ? "This hub runs in local mode: no login is needed." : e.message;
  }
});
