// The call page: a click (or Enter/Space) on a timeline box, a segment's time or a line of
// what was said moves the player to that moment and plays it. Served from /static: the
// page's CSP allows no inline script.
document.addEventListener("DOMContentLoaded", function () {
  var audio = document.getElementById("recording");
  document.querySelectorAll("[data-start]").forEach(function (el) {
    function go(event) {
      if (!audio) return;
      if (event) {
        // A line of the transcript holds its own time button: one seek per click. Words
        // being selected on a line (to copy them) are no click to play.
        event.stopPropagation();
        if (event.type === "click" && el.tagName === "TR" && window.getSelection &&
            String(window.getSelection())) return;
        event.preventDefault();
      }
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
