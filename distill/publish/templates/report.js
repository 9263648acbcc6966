window.addEventListener("load",function(){var i=Array.prototype.slice.call(document.images);
var ok=i.every(function(m){return m.complete&&m.naturalWidth>0;});
document.body.setAttribute("data-images-ok",ok?"true":"false");
document.body.setAttribute("data-images",String(i.length));});