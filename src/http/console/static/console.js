// The board updates itself from /board/events (server-sent events); without JavaScript the
// page's <noscript> refresh does the same more slowly. Nothing else needs a script.
(function () {
  var board = document.getElementById("board");
  if (!board || !window.EventSource) return;
  var es = new EventSource("/board/events");
  es.addEventListener("board", function (e) {
    board.innerHTML = e.data;
    board.setAttribute("data-updated", String(Date.now()));
  });
})();
