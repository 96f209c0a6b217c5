// medrelay import page: drag and drop. Files dropped on the zone go into
// the form's file input and the form is submitted, exactly as choosing
// them with the button and pressing "Check files" does (the page works
// without this script).
(function () {
  "use strict";
  var zone = document.getElementById("dropzone");
  var input = document.getElementById("files");
  var form = document.getElementById("import-form");
  if (!zone || !input || !form) {
    return;
  }
  function over(e) {
    e.preventDefault();
    zone.classList.add("over");
  }
  function leave(e) {
    e.preventDefault();
    zone.classList.remove("over");
  }
  zone.addEventListener("dragenter", over);
  zone.addEventListener("dragover", over);
  zone.addEventListener("dragleave", leave);
  zone.addEventListener("drop", function (e) {
    leave(e);
    if (e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files.length > 0) {
      input.files = e.dataTransfer.files;
      form.submit();
    }
  });
})();
