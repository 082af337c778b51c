// The call page: a click (or Enter/Space) on a timeline box or a segment's time moves the
// player to that moment and plays it. Served from /static: the page's CSP allows no inline script.
document.addEventListener("DOMContentLoaded", function () {
  var audio = document.getElementById("recording");
  document.querySelectorAll("[data-start]").forEach(function (el) {
    function go(event) {
      if (!audio) return;
      if (event) event.preventDefault();
      audio.currentTime = parseFloat(el.getAttribute("data-start"));
      var playing = audio.play();
      if (playing && playing.catch) playing.catch(function () {});
    }
    el.addEventListener("click", go);
    el.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") go(e);
    });
  });
});
